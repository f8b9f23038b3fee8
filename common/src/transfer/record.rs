//! The record kept beside a partial file, so that a later attempt resumes from it: what the partial
//! belongs to, and which of its byte ranges are in place. One format for both ends (TOML), written
//! by each end's atomic replace at every checkpoint.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Ranges;

/// What a partial holds. `K` says what it belongs to: the remote version for a download, the path,
/// size and source version for an upload. A resume keeps the partial only if `K` still matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord<K> {
    #[serde(flatten)]
    pub of: K,
    /// Written by checkpoints; a range is recorded only after its bytes were written.
    #[serde(default)]
    pub present: Ranges,
}

impl<K: Serialize + DeserializeOwned> PartialRecord<K> {
    pub fn new(of: K, present: &Ranges) -> PartialRecord<K> {
        // A record claims at most MAX_RANGES ranges, which is always safe: a resume sends more.
        PartialRecord { of, present: present.truncated() }
    }

    pub fn to_text(&self) -> std::io::Result<String> {
        toml::to_string(self).map_err(std::io::Error::other)
    }

    /// The record in `text`; `None` if it is not one (damaged, or another version's format).
    pub fn parse(text: &str) -> Option<PartialRecord<K>> {
        toml::from_str(text).ok()
    }

    /// The ranges it records, if they all lie within a partial of `len` bytes: a record never
    /// claims a hole.
    pub fn present_within(&self, len: u64) -> Option<Ranges> {
        Ranges::checked(&self.present, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Of {
        version: String,
    }

    #[test]
    fn a_record_round_trips_and_never_claims_past_the_partial() {
        let mut present = Ranges::new();
        present.insert(0, 10);
        present.insert(20, 30);
        let record = PartialRecord::new(Of { version: "v1".into() }, &present);
        let again: PartialRecord<Of> =
            PartialRecord::parse(&record.to_text().expect("text")).expect("parses");
        assert_eq!(again, record);
        assert_eq!(again.present_within(30), Some(present));
        assert_eq!(again.present_within(25), None, "claims bytes the partial does not hold");
        assert!(PartialRecord::<Of>::parse("v1\n0 10\n").is_none(), "the old text format");
    }
}
