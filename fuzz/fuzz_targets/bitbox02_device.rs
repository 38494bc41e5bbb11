#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| coldkeep::testkit::fuzzing::bitbox02_device(data));
