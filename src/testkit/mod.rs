//! Test and demo support, kept out of the domain layers: throwaway sshd nodes ([`sandbox`]), a
//! scripted fake HID device ([`hid_fake`]), Acra keystore fixtures ([`acra`]), nodectl's
//! cn-config.yaml as nodectl writes it ([`nodectl`]), the node helper installed as an operator
//! would ([`node_helper`]) and the fuzz entry points ([`fuzzing`]). Used by the integration
//! tests, `bench/`, `fuzz/` and `coldkeep demo`.
//!
//! It lives in the library (hidden from the docs) rather than under `tests/` so that all of those
//! share one copy. Domain layers (config, remote, material, bundle, store, hid, ops) never import
//! it outside `#[cfg(test)]` code: it sits on top of them, like the commands.

pub mod acra;
pub mod bitbox02_fake;
pub mod bitbox02_server;
pub mod fuzzing;
pub mod hid_fake;
pub mod node_helper;
pub mod nodectl;
pub mod sandbox;
