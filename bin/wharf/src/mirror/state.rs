//! What a mirror remembers between runs: the versions of each pair of files it left equal, in
//! `LOCAL/.wharf-mirror`, so that the next mirror need not read them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use wharf_common::path::RemotePath;

use super::trees::Node;
use crate::error::{ClientError, Result};
use crate::transfer::Outcome;

/// The file beside a mirrored tree that remembers which versions were last equal.
pub const STATE_FILE: &str = ".wharf-mirror";

/// Versions of a pair of files that were equal when a mirror last left them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct State {
    remote_root: String,
    /// Relative path → (local version, remote version).
    pub(super) files: HashMap<String, (String, String)>,
}

pub(super) fn load_state(local_root: &Path, remote_root: &RemotePath) -> State {
    std::fs::read(local_root.join(STATE_FILE))
        .ok()
        .and_then(|bytes| rmp_serde::from_slice::<State>(&bytes).ok())
        .filter(|state| state.remote_root == remote_root.as_str())
        .unwrap_or_else(|| State { remote_root: remote_root.to_string(), files: HashMap::new() })
}

/// Writes the state in one rename. It is a hint: losing it only costs a comparison by content.
pub(super) fn save_state(local_root: &Path, state: &State) -> Result<()> {
    let bytes = rmp_serde::to_vec(state).map_err(|err| ClientError::Protocol(err.to_string()))?;
    let path = local_root.join(STATE_FILE);
    crate::local::replace_file(&path, &bytes)
        .map_err(|err| ClientError::local(path.display().to_string(), err))
}

/// The remote tree as the uploads left it: `before`, with each file of `sent` (its path below the
/// mirror's root, and the remote path it went to) given the version its upload's answer said.
/// None if an answer did not say (a server from before it did).
pub(super) fn after_uploads(
    mut before: BTreeMap<String, Node>,
    sent: Vec<(String, RemotePath)>,
    uploaded: &[(RemotePath, Outcome)],
) -> Option<BTreeMap<String, Node>> {
    let outcomes: HashMap<&RemotePath, &Outcome> =
        uploaded.iter().map(|(path, outcome)| (path, outcome)).collect();
    for (relative, remote) in sent {
        let outcome = outcomes.get(&remote)?;
        let version = outcome.version.clone()?;
        // Only versions are compared; the time is not kept here.
        before.insert(relative, Node::File { size: outcome.size, version, mtime: 0 });
    }
    Some(before)
}

/// Records the versions that are now equal on both sides, as the mirror left them, so that the
/// next mirror reads nothing for them.
pub(super) fn remember_equal(
    source: &BTreeMap<String, Node>,
    remote_after: &BTreeMap<String, Node>,
    local_after: &BTreeMap<String, Node>,
    state: &mut State,
) {
    state.files.clear();
    for (path, node) in local_after {
        if let (Node::File { version: local, .. }, Some(Node::File { version: remote, .. })) =
            (node, remote_after.get(path))
            && source.contains_key(path)
        {
            state.files.insert(path.clone(), (local.clone(), remote.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wharf_common::hash::Sha256Digest;

    fn file(version: &str) -> Node {
        Node::File { size: 1, version: version.into(), mtime: 0 }
    }

    fn uploaded(path: &str, version: Option<&str>) -> (RemotePath, Outcome) {
        let outcome = Outcome {
            size: 1,
            resumed_from: 0,
            sha256: Sha256Digest::of(b"x"),
            elapsed: Duration::ZERO,
            version: version.map(str::to_owned),
        };
        (RemotePath::parse(path).expect("path"), outcome)
    }

    #[test]
    fn the_uploads_answers_give_the_versions_the_tree_would_have() {
        let before = BTreeMap::from([("a".into(), file("a1")), ("b".into(), file("b1"))]);
        let sent = |names: &[&str]| -> Vec<(String, RemotePath)> {
            let remote = |name: &str| RemotePath::parse(&format!("/up/{name}")).expect("path");
            names.iter().map(|name| (name.to_string(), remote(name))).collect()
        };
        let answers = [uploaded("/up/b", Some("b2")), uploaded("/up/c", Some("c1"))];
        let after = after_uploads(before.clone(), sent(&["b", "c"]), &answers).expect("all said");
        let expected = BTreeMap::from([
            ("a".into(), file("a1")),
            ("b".into(), file("b2")),
            ("c".into(), file("c1")),
        ]);
        assert_eq!(after, expected);
        // An answer without a version (an older server), or none at all: the tree must be read.
        let older = [uploaded("/up/b", Some("b2")), uploaded("/up/c", None)];
        assert_eq!(after_uploads(before.clone(), sent(&["b", "c"]), &older), None);
        assert_eq!(after_uploads(before, sent(&["b", "c"]), &answers[..1]), None);
    }
}
