//! The integration tests, as one test binary: after a change to the library, one executable to
//! link instead of one per file. Each file below is one former `tests/<name>.rs` and keeps its
//! tests' names (`cargo test --test it backup_cli::` runs one).
//!
//! Every test keeps its state to itself (a temp dir, its own sshd nodes, the binary run as a child
//! with its own HOME and TMPDIR), so sharing a process with the others changes nothing; a new test
//! must not touch process-wide state either (`std::env::set_var`, the current dir, signal
//! handlers).
//!
//! Two exceptions stay binaries of their own. `tests/harden.rs` turns core dumps off in its own
//! process (`harden::at_start` on the test process, read back from /proc/self), which would
//! change every test sharing the process. And `tests/package.rs`: it installs and purges the
//! .deb on the machine (dpkg, /usr/bin/coldkeep, /etc/coldkeep, the systemd units, a system user),
//! which no temp dir can make private, and cargo runs test binaries one after another, so it never
//! overlaps these tests (`deploy`'s `systemd-analyze verify` of units with the same names, say).
//!
//! A new file: `git mv tests/<name>.rs tests/it/<name>.rs`, in it `mod support;` becomes
//! `use crate::support;` (and `include_str!("fixtures/..")` becomes `"../fixtures/.."`), and a
//! `mod <name>;` line goes below.

// Shared helpers, where standalone test files (`mod support;` in tests/<name>.rs) find them too.
#[path = "../support/mod.rs"]
mod support;

mod acra_cli;
mod acra_keys_open;
mod backup_cli;
mod become_attacks;
mod become_cli;
mod become_config;
mod become_failures;
mod become_limits;
mod become_swaps;
mod bitbox02_device_cli;
mod bitbox02_hostile_cli;
mod config_errors;
mod config_master_key;
mod config_redaction;
mod deploy;
mod faults;
mod fuzz;
mod hardware_cli;
mod hooks_cli;
mod init_cli;
mod known_hosts;
mod nodectl_cli;
mod onlykey_capture_cli;
mod onlykey_verify_cli;
mod operations_cli;
mod remote_caps;
mod remote_session;
mod restore_cli;
mod restore_races;
mod sftp_fallback;
mod signing;
mod store_trust;
