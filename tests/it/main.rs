//! The integration tests, as one test binary: one link of the library and its dependencies
//! instead of one per file, which is most of a cold `cargo test`. Each file below is one former
//! `tests/<name>.rs` and keeps its tests' names (`cargo test --test it backup_cli::` runs one).
//!
//! Every test keeps its state to itself (a temp dir, its own sshd nodes, the binary run as a child
//! with its own HOME and TMPDIR), so sharing a process with the others changes nothing; a new test
//! must not touch process-wide state either (`std::env::set_var`, the current dir, signal
//! handlers).

// Shared helpers, where standalone test files (`mod support;` in tests/<name>.rs) find them too.
#[path = "../support/mod.rs"]
mod support;

mod acra_cli;
mod acra_keys_open;
mod backup_cli;
mod config_errors;
mod deploy;
mod faults;
mod fuzz;
mod hardware_cli;
mod init_cli;
mod onlykey_capture_cli;
mod onlykey_verify_cli;
mod operations_cli;
mod package;
mod remote_session;
mod restore_cli;
