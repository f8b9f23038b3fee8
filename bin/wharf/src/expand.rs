//! Turning the paths a person typed into the files they mean: wildcards in the last component,
//! locally (`put *.log`) and remotely (`get 'logs/*.gz'`, `rm '*.tmp'`, `ls '*.txt'`).
//!
//! A name that exists exactly as written is taken literally, even if it looks like a pattern, so
//! that `report[1].txt` can be named; a pattern that matches nothing is an error, as in sftp.

use std::path::{Path, PathBuf};

use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, EntryKind, ErrorCode};

use crate::error::{ClientError, Result};
use crate::glob::{has_wildcards, matches, unescape};
use crate::session::Session;

/// `dir/name` as a remote path.
pub fn remote_child(dir: &RemotePath, name: &str) -> Result<RemotePath> {
    dir.join(name).map_err(|err| ClientError::Remote {
        code: ErrorCode::InvalidPath,
        message: format!("{dir}/{name}: {err}"),
    })
}

/// The local paths `pattern` stands for, sorted.
pub fn local(pattern: &str) -> Result<Vec<PathBuf>> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !has_wildcards(name) {
        return Ok(vec![unescaped_path(path, name)]);
    }
    if path.symlink_metadata().is_ok() {
        return Ok(vec![path.to_owned()]);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let entries =
        std::fs::read_dir(dir).map_err(|err| ClientError::local(dir.display().to_string(), err))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_str().is_some_and(|n| matches(name, n)))
        .map(|entry| dir.join(entry.file_name()))
        .collect();
    if found.is_empty() {
        return Err(ClientError::Usage(format!("{pattern}: no match")));
    }
    found.sort();
    Ok(found)
}

fn unescaped_path(path: &Path, name: &str) -> PathBuf {
    if !name.contains('\\') {
        return path.to_owned();
    }
    path.with_file_name(unescape(name))
}

/// One remote path a pattern stands for. A wildcard's match carries the entry its listing gave,
/// which says what a `stat` would, unless it is a symlink: a listing shows the link itself, a
/// `stat` what it points to.
#[derive(Debug, Clone)]
pub struct RemoteMatch {
    pub path: RemotePath,
    listed: Option<Entry>,
}

impl RemoteMatch {
    fn literal(path: RemotePath) -> RemoteMatch {
        RemoteMatch { path, listed: None }
    }

    /// What a `stat` of the path would say, if the listing told it already.
    pub fn known(&self) -> Option<&Entry> {
        self.listed.as_ref().filter(|entry| entry.kind != EntryKind::Symlink)
    }

    /// The path's `stat`: from the listing where it can be, without a round trip.
    pub async fn stat(&self, session: &Session) -> Result<Entry> {
        match self.known() {
            Some(entry) => Ok(entry.clone()),
            None => session.stat(&self.path).await,
        }
    }
}

/// The remote paths `pattern` stands for, sorted; resolved against the working directory.
pub async fn remote(session: &Session, pattern: &str) -> Result<Vec<RemoteMatch>> {
    let (dir_part, name) = pattern
        .rsplit_once('/')
        .map_or((".", pattern), |(d, n)| (if d.is_empty() { "/" } else { d }, n));
    if !has_wildcards(name) {
        let literal = match pattern.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/{}", unescape(name)),
            None => unescape(name),
        };
        return Ok(vec![RemoteMatch::literal(session.resolve(&literal)?)]);
    }
    let dir = session.resolve(dir_part)?;
    let entries = session.list(&dir).await?;
    let listed = |entry: Entry| -> Result<RemoteMatch> {
        Ok(RemoteMatch { path: remote_child(&dir, &entry.name)?, listed: Some(entry) })
    };
    if let Some(exact) = entries.iter().find(|entry| entry.name == name) {
        return Ok(vec![listed(exact.clone())?]);
    }
    let mut found = Vec::new();
    for entry in entries {
        if matches(name, &entry.name) {
            found.push(listed(entry)?);
        }
    }
    if found.is_empty() {
        return Err(ClientError::Remote {
            code: ErrorCode::NotFound,
            message: format!("{pattern}: no match"),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// Every remote path that any of `patterns` stands for, in order.
pub async fn remote_all(session: &Session, patterns: &[String]) -> Result<Vec<RemoteMatch>> {
    let mut all = Vec::new();
    for pattern in patterns {
        all.extend(remote(session, pattern).await?);
    }
    Ok(all)
}

/// The same, the paths alone.
pub async fn remote_paths(session: &Session, patterns: &[String]) -> Result<Vec<RemotePath>> {
    Ok(remote_all(session, patterns).await?.into_iter().map(|found| found.path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_name_that_exists_is_taken_literally() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("report[1].txt"), b"x").expect("file");
        std::fs::write(dir.path().join("report1.txt"), b"y").expect("file");
        let path = |name: &str| dir.path().join(name).display().to_string();
        assert_eq!(
            local(&path("report[1].txt")).expect("literal"),
            [dir.path().join("report[1].txt")]
        );
        assert_eq!(
            local(&path("report\\[1].txt")).expect("escaped"),
            [dir.path().join("report[1].txt")]
        );
        assert_eq!(
            local(&path("report[0-9].txt")).expect("glob"),
            [dir.path().join("report1.txt")]
        );
        assert!(matches!(local(&path("*.none")), Err(ClientError::Usage(_))));
    }
}
