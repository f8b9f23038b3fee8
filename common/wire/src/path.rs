//! Remote paths as the client sees them: `/` is the user's home.
//!
//! A [`RemotePath`] is always absolute and normalised: no empty, `.` or `..` components, and `..` at the
//! root stays at the root. Normalisation is purely lexical, like a shell's `cd`; it is *not* the jail.
//! The server still resolves the result beneath an open handle on the home, which is what stops symlinks.

use std::fmt;

use crate::limits::{MAX_NAME_LEN, MAX_PATH_LEN};

/// Why a path was refused before it reached the filesystem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path contains a NUL byte, which no filesystem call can carry.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path contains a backslash; wharf paths use `/` only, so a `\` is refused rather than guessed at.
    #[error("path contains a backslash; use '/' as the separator")]
    Backslash,
    /// The path is longer than [`MAX_PATH_LEN`] bytes.
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// One component is longer than [`MAX_NAME_LEN`] bytes.
    #[error("a path component is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
}

/// A normalised absolute path inside a user's home, such as `/` or `/docs/a.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemotePath(String);

impl RemotePath {
    /// The home directory itself.
    pub fn root() -> Self {
        RemotePath("/".to_owned())
    }

    /// Parses a wire path. Relative paths are taken relative to the root.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        Self::root().join(raw)
    }

    /// Resolves `raw` against `self`, as `cd raw` would from `self`. An absolute `raw` ignores `self`.
    pub fn join(&self, raw: &str) -> Result<Self, PathError> {
        check_raw(raw)?;
        let mut parts: Vec<&str> =
            if raw.starts_with('/') { Vec::new() } else { self.components().collect() };
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name if name.len() > MAX_NAME_LEN => return Err(PathError::NameTooLong),
                name => parts.push(name),
            }
        }
        let joined = format!("/{}", parts.join("/"));
        if joined.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        Ok(RemotePath(joined))
    }

    /// The path as sent on the wire: always starts with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the home directory itself.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The path's components, from the root down. Empty for the root.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|part| !part.is_empty())
    }

    /// The path relative to the home, for handing to a directory handle: `.` for the root.
    pub fn relative(&self) -> &str {
        if self.is_root() { "." } else { &self.0[1..] }
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The containing directory; the root is its own parent.
    pub fn parent(&self) -> RemotePath {
        match self.0.rfind('/') {
            Some(0) | None => Self::root(),
            Some(cut) => RemotePath(self.0[..cut].to_owned()),
        }
    }

    /// True if `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &RemotePath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True if `name` can name one entry of a directory: not empty, `.` or `..`, and without `/` or NUL.
/// A client checks every name a server lists before it names a local file, so that a hostile server
/// cannot steer a download out of the folder it goes into (as scp's CVE-2019-6111 did).
pub fn is_entry_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\0'])
}

/// True if `path` is entry names joined by `/` (`a/b/c`): relative, and never leaving the folder it
/// is joined to.
pub fn is_relative_entry_path(path: &str) -> bool {
    path.split('/').all(is_entry_name)
}

fn check_raw(raw: &str) -> Result<(), PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if raw.contains('\0') {
        return Err(PathError::Nul);
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        RemotePath::parse(raw).expect("valid path").0
    }

    #[test]
    fn entry_names_are_one_component_that_stays_put() {
        for good in ["a", "a b", ".hidden", "...", "a\\b", "é"] {
            assert!(is_entry_name(good), "{good:?} refused");
            assert!(is_relative_entry_path(good), "{good:?} refused as a path");
        }
        for bad in ["", ".", "..", "a/b", "/a", "a/", "a\0b"] {
            assert!(!is_entry_name(bad), "{bad:?} taken for a name");
        }
        assert!(is_relative_entry_path("a/b/c"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", ""] {
            assert!(!is_relative_entry_path(bad), "{bad:?} taken for a relative path");
        }
    }

    #[test]
    fn normalises_dots_and_slashes() {
        assert_eq!(norm(""), "/");
        assert_eq!(norm("/"), "/");
        assert_eq!(norm("a//b/./c/"), "/a/b/c");
        assert_eq!(norm("/a/b/../c"), "/a/c");
    }

    #[test]
    fn dotdot_stays_at_root() {
        assert_eq!(norm("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(norm(".."), "/");
        let deep = RemotePath::parse("/x").expect("valid");
        assert_eq!(deep.join("../../..").expect("valid").as_str(), "/");
    }

    #[test]
    fn join_is_relative_unless_absolute() {
        let cwd = RemotePath::parse("/docs/2026").expect("valid");
        assert_eq!(cwd.join("a b.txt").expect("valid").as_str(), "/docs/2026/a b.txt");
        assert_eq!(cwd.join("/top").expect("valid").as_str(), "/top");
        assert_eq!(cwd.join("..").expect("valid").as_str(), "/docs");
    }

    #[test]
    fn refuses_hostile_bytes() {
        assert_eq!(RemotePath::parse("a\0b"), Err(PathError::Nul));
        assert_eq!(RemotePath::parse("..\\..\\etc"), Err(PathError::Backslash));
        assert_eq!(RemotePath::parse(&"n".repeat(256)), Err(PathError::NameTooLong));
        assert_eq!(RemotePath::parse(&"a/".repeat(2049)), Err(PathError::TooLong));
        assert!(RemotePath::parse(&"n".repeat(255)).is_ok());
    }

    #[test]
    fn parent_name_and_prefix() {
        let p = RemotePath::parse("/a/bc/d").expect("valid");
        assert_eq!(p.parent().as_str(), "/a/bc");
        assert_eq!(p.file_name(), Some("d"));
        assert_eq!(RemotePath::root().parent(), RemotePath::root());
        assert_eq!(p.relative(), "a/bc/d");
        assert!(p.starts_with(&RemotePath::parse("/a/bc").expect("valid")));
        assert!(!p.starts_with(&RemotePath::parse("/a/b").expect("valid")));
    }
}
