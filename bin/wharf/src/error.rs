//! Client errors and the exit codes they map to.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a command failed (remote error, local file error, an internal failure of the client) |
//! | 2 | usage: bad arguments, or a batch command that does not parse |
//! | 3 | connection or host key: unreachable, handshake failed, certificate unknown or changed, connection lost |
//! | 4 | authentication: wrong user or password, too many attempts, no password available |

use std::process::ExitCode;

use wharf_common::proto::ErrorCode;

use crate::trust::HostKeyError;

/// Everything that can go wrong in the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or command syntax.
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached or the handshake failed.
    #[error("cannot connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The server's certificate is not trusted.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The server refused the login.
    #[error("{0}")]
    Auth(String),
    /// The connection ended during the session.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// The server answered a request with an error.
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
    /// A local file operation failed.
    #[error("{context}: {}", describe_io(source))]
    Local {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The user pressed Ctrl-C during a transfer or a copy; what was kept of it.
    #[error("interrupted; {0}")]
    Interrupted(&'static str),
    /// The server sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A task of this client failed (it panicked, or was cancelled): neither the network's fault
    /// nor the user's.
    #[error("internal error: {0}")]
    Internal(String),
    /// A background job failed or was stopped; its report said how. `code` is the exit code its
    /// own error has (1 for a stopped one).
    #[error("a background job did not succeed (see its report above)")]
    JobFailed { code: u8 },
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Connect { .. }
            | ClientError::HostKey(_)
            | ClientError::ConnectionLost(_) => 3,
            ClientError::Protocol(_) => 3,
            ClientError::Auth(_) => 4,
            ClientError::Remote { .. }
            | ClientError::Local { .. }
            | ClientError::Interrupted(_)
            | ClientError::Internal(_) => 1,
            ClientError::JobFailed { code } => *code,
        }
    }

    /// The exit code as an [`ExitCode`].
    pub fn exit(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }

    /// True if writing our own output failed because its reader went away.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, ClientError::Local { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// True if the session cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        // A job's lost connection was the job's: the shell's own goes on (or is made again).
        !matches!(self, ClientError::JobFailed { .. }) && self.exit_code() >= 3
    }

    pub fn local(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Local { context: context.into(), source }
    }
}

/// An I/O error as a person reads it: "no such file or directory", without "(os error 2)".
pub fn describe_io(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(cut) if text.ends_with(')') => text[..cut].to_owned(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Convenience alias.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_sentences() {
        let err = ClientError::local("lls /nope", std::io::Error::from_raw_os_error(2));
        assert_eq!(err.to_string(), "lls /nope: no such file or directory");
        let other = ClientError::local("x", std::io::Error::other("Disk on fire"));
        assert_eq!(other.to_string(), "x: disk on fire");
    }
}
