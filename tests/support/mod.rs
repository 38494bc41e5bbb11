//! Shared helpers for integration tests.
#![allow(dead_code)]

pub use coldkeep::testkit::acra;
pub mod cutter;
pub mod daemon;
pub mod fleet;
pub mod sudo;
pub mod themis;
