//! wharfd, the wharf file server: a multi-user file service over QUIC.
//!
//! Everything lives in this library so that it can be tested; `main.rs` only calls [`cli::main`].
//!
//! - [`cli`]: the command line (`setup`, `serve`); [`admin`]: `user ...`.
//! - [`setup`], [`layout`], [`config`]: the server root and its configuration.
//! - [`users`], [`password`], [`throttle`], [`auth`]: user records and logins.
//! - [`storage`]: the only way to touch users' files, jailed with cap-std; [`quota`] accounts for them.
//! - [`server`], [`limiter`], [`conn`], [`cmd`]: the endpoint, connections and the commands.
//! - [`blocking`]: bounded offloading of blocking work from the async executor.

pub mod admin;
pub mod atomic;
pub mod auth;
pub use wharf_common::blocking;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod conn;
pub mod context;
pub mod db;
pub mod layout;
pub mod limiter;
pub mod logging;
pub mod metrics;
pub mod open_files;
pub mod password;
pub mod quota;
pub mod server;
pub mod setup;
pub mod size;
pub mod storage;
pub mod throttle;
pub mod users;
