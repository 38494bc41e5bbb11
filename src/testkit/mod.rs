//! Test and demo support, kept out of the domain layers: throwaway sshd nodes ([`sandbox`]), a
//! scripted fake HID device ([`hid_fake`]), Acra keystore fixtures ([`acra`]), nodectl's
//! cn-config.yaml as nodectl writes it ([`nodectl`]) and the fuzz entry points ([`fuzzing`]).
//! Used by the integration tests, `bench/`, `fuzz/` and `coldkeep demo`.

pub mod acra;
pub mod fuzzing;
pub mod hid_fake;
pub mod nodectl;
pub mod sandbox;
