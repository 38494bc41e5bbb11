//! coldkeep: back up server key material over SSH into age-encrypted cold storage.
//!
//! Data flows one way: [`config`] -> [`remote`] -> [`material`] -> [`bundle`] -> [`store`] ->
//! [`ops`] -> [`commands`]. A lower layer never imports a higher one; [`ops`] never prints,
//! [`commands`] are one thin file per subcommand, [`output`] holds their tables and JSON.

#![warn(missing_docs)]

pub mod bundle;
pub mod cli;
pub mod commands;
pub mod config;
pub mod digest;
pub mod error;
pub mod harden;
pub mod hid;
pub mod init;
pub mod material;
pub mod memory;
pub mod nodehelper;
pub mod ops;
pub mod output;
pub mod par;
pub mod remote;
pub mod schedule;
pub mod sign;
pub mod store;
#[doc(hidden)]
pub mod testkit;
pub mod text;
