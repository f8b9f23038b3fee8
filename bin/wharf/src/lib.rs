//! wharf, the client: an interactive shell and a batch runner for wharfd servers.
//!
//! [`session::Session`] is the API: connect (with the host trust of [`trust`]), log in, and run
//! commands. The shell ([`shell`]), batch mode ([`batch`]) and the integration tests are all built on
//! it; [`commands`] defines the command language once, and [`exec`] runs it.

pub mod batch;
pub mod cat;
pub mod cli;
pub mod commands;
pub mod copy;
pub mod credentials;
pub mod error;
pub mod exec;
pub mod expand;
pub mod format;
pub mod glob;
pub mod identity;
pub mod jobs;
pub mod link;
pub mod listing;
pub mod local;
pub mod mirror;
pub mod pipeline;
pub mod progress;
pub mod rearrange;
pub mod reconnect;
pub mod rpc;
pub mod session;
pub mod shell;
pub mod streams;
pub mod target;
pub mod terminal;
pub mod transfer;
pub mod tree;
pub mod trust;

/// wharf's configuration directory: `$XDG_CONFIG_HOME/wharf`, or `~/.config/wharf`.
pub fn config_dir() -> std::path::PathBuf {
    match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir).join("wharf"),
        None => local::home_dir().join(".config").join("wharf"),
    }
}
