//! Where to connect: `[USER@]HOST[:PORT]`, with IPv6 literals in brackets (`ann@[::1]:4433`), and
//! `wharf://[USER@]HOST[:PORT]/PATH` URLs.

use std::fmt;
use std::str::FromStr;

use wharf_common::limits::DEFAULT_PORT;

use crate::error::ClientError;

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
            // `/` and `:` make no user name, but a mistyped URL (`ftp://ann@host`).
            Some((user, _)) if user.is_empty() || user.contains(['/', ':', ' ']) => {
                return Err(bad());
            }
            Some((user, rest)) => (Some(user.to_owned()), rest),
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

/// Splits `wharf://[USER@]HOST[:PORT]/PATH` into the server and the remote path. The user and the
/// path are percent-decoded (`my%20docs` is `my docs`); `?` and `#` in a name must be written
/// `%3F` and `%23`, since a URL gives them other meanings.
pub fn parse_url(text: &str) -> Result<(Target, String), ClientError> {
    let usage = |why: &str| {
        ClientError::Usage(format!("{text:?}: {why}; expected wharf://[USER@]HOST[:PORT]/PATH"))
    };
    let url = url::Url::parse(text).map_err(|err| usage(&err.to_string()))?;
    if url.scheme() != "wharf" {
        return Err(usage("not a wharf:// URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(usage("write ? and # in names as %3F and %23"));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(usage("no host")),
    };
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
            .map_err(|_| usage("percent-encoding that is not UTF-8"))
    };
    let user = match url.username() {
        "" => None,
        user => Some(decode(user)?),
    };
    let path = match url.path() {
        "" => "/".to_owned(),
        path => decode(path)?,
    };
    let port = url.port().unwrap_or(wharf_common::limits::DEFAULT_PORT);
    Ok((Target { user, host, port }, path))
}

/// Whether a command-line argument is meant as a URL (`wharf://...`, or one of another scheme to
/// refuse) rather than a local path or `[USER@]HOST[:PORT]`.
pub fn is_url(arg: &str) -> bool {
    arg.contains("://")
}

/// The server of the shell and of `-c` and `-b`: `[USER@]HOST[:PORT]`, or a
/// `wharf://[USER@]HOST[:PORT]/DIR` URL, which starts in `DIR` (as sftp takes `sftp://` URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellTarget {
    pub target: Target,
    /// Where to `cd` after logging in; `None` for the home.
    pub start_dir: Option<String>,
}

impl FromStr for ShellTarget {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if is_url(text) {
            let (target, path) = parse_url(text)?;
            let start_dir = (path != "/").then_some(path);
            return Ok(ShellTarget { target, start_dir });
        }
        let target = text.parse().map_err(|_| {
            ClientError::Usage(format!(
                "invalid server {text:?}: expected [USER@]HOST[:PORT] or wharf://[USER@]HOST[:PORT]/DIR"
            ))
        })?;
        Ok(ShellTarget { target, start_dir: None })
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
        let nonsense =
            ["", "@host", "host:port", "host:99999", "[::1", "[::1]x", "a b", "wharf://ann@host"];
        for bad in nonsense {
            assert!(bad.parse::<Target>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_percent_decoded() {
        let (target, path) =
            parse_url("wharf://ann@files.example:4500/my%20docs/a%23b.txt").expect("url");
        assert_eq!(
            (target.user.as_deref(), target.host.as_str(), target.port),
            (Some("ann"), "files.example", 4500)
        );
        assert_eq!(path, "/my docs/a#b.txt");
        let (target, path) = parse_url("wharf://[::1]/").expect("ipv6");
        assert_eq!((target.host.as_str(), target.port, path.as_str()), ("::1", 4433, "/"));
        assert_eq!(parse_url("wharf://host").expect("no path").1, "/");
        assert_eq!(parse_url("wharf://h/with space").expect("raw space").1, "/with space");
        assert!(parse_url("ftp://host/x").is_err());
        assert!(parse_url("wharf://host/a?b").is_err(), "a raw ? is refused, not cut off");
        assert!(parse_url("wharf:///nohost").is_err());
    }

    #[test]
    fn the_shell_takes_a_server_or_a_url_to_start_in() {
        let shell = |text: &str| text.parse::<ShellTarget>();
        let plain = shell("ann@host:99").expect("plain");
        assert_eq!((plain.target, plain.start_dir), (t("ann@host:99"), None));
        let url = shell("wharf://ann@host:99/my%20docs").expect("url");
        assert_eq!((url.target, url.start_dir.as_deref()), (t("ann@host:99"), Some("/my docs")));
        assert_eq!(shell("wharf://ann@host/").expect("home").start_dir, None);
        for bad in ["sftp://ann@host", "wharf:/ann@host", "ftp://host/x", "ann@host:/dir"] {
            assert!(matches!(shell(bad), Err(ClientError::Usage(_))), "{bad:?}");
        }
    }
}
