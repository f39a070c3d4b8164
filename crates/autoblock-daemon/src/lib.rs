//! The autoblock daemon as a library: what `autoblock run` is made of.
//!
//! Data flows one way: a source (a followed file, stdin, the journal) yields lines, the
//! detection crate turns them into failures and ban decisions, the durable store records the
//! decisions, and the controller's async service applies them to the kernel. The CLI binary
//! is thin glue around this crate. It executes no program, not even `journalctl`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod control;
pub mod crowdsec;
pub mod daemon;
pub mod metrics;
pub mod monitor;
pub mod source;
pub mod store;

pub use config::{Config, ConfigError, JailConfig};
