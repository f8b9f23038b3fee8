//! `[USER@]HOST[:PORT]`, with IPv6 literals in brackets (`ann@[::1]:4433`).

use std::fmt;
use std::str::FromStr;

use wharf_common::limits::DEFAULT_PORT;

/// Where to connect, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The key for this server in `known_hosts`: `host:port`, IPv6 in brackets.
    pub fn host_key(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host.to_ascii_lowercase(), self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host_key())
    }
}

/// A target that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid target {0:?}: expected [USER@]HOST[:PORT]")]
pub struct TargetError(String);

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || TargetError(text.to_owned());
        let (user, rest) = match text.rsplit_once('@') {
            Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
            Some(_) => return Err(bad()),
            None => (None, text),
        };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else if rest.matches(':').count() > 1 {
            (rest, None) // a bare IPv6 literal without a port
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(bad());
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| bad())?,
            None => DEFAULT_PORT,
        };
        Ok(Target { user, host: host.to_owned(), port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Target {
        text.parse().expect("valid target")
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(t("host"), Target { user: None, host: "host".into(), port: 4433 });
        assert_eq!(
            t("ann@host:99"),
            Target { user: Some("ann".into()), host: "host".into(), port: 99 }
        );
        assert_eq!(
            t("ann@[::1]:5"),
            Target { user: Some("ann".into()), host: "::1".into(), port: 5 }
        );
        assert_eq!(t("::1").port, 4433);
        assert_eq!(t("[::1]:7").host_key(), "[::1]:7");
        assert_eq!(t("LocalHost").host_key(), "localhost:4433");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "@host", "host:port", "host:99999", "[::1", "[::1]x", "a b"] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
    }
}
