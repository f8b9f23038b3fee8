//! Tab completion: command names, remote paths and local paths.
//!
//! reedline's completer is synchronous; remote listings are fetched with the runtime handle's
//! `block_on` (the shell thread is not a runtime thread) and cached briefly, so that repeated Tabs
//! do not each wait for a round trip. The shell clears the cache after every command, since a
//! command may have changed the directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use reedline::{Completer, CompletionResult, Span, Suggestion};
use tokio::runtime::Handle;
use wharf_common::path::RemotePath;
use wharf_common::proto::{Entry, EntryKind};

use crate::commands::{LOCAL_PATH_COMMANDS, LOCAL_THEN_REMOTE, REMOTE_THEN_LOCAL, command_names};
use crate::session::Session;

/// How long a remote listing is reused for completion.
const LISTING_TTL: Duration = Duration::from_secs(5);
/// How long completion waits for a listing before giving up quietly.
const LISTING_TIMEOUT: Duration = Duration::from_secs(3);

/// Recently fetched remote listings.
pub type ListingCache = Arc<Mutex<HashMap<RemotePath, (Instant, Arc<Vec<Entry>>)>>>;

pub struct WharfCompleter {
    session: Arc<Session>,
    runtime: Handle,
    cache: ListingCache,
    commands: Vec<String>,
}

impl WharfCompleter {
    pub fn new(session: Arc<Session>, runtime: Handle, cache: ListingCache) -> WharfCompleter {
        WharfCompleter { session, runtime, cache, commands: command_names() }
    }

    fn remote_entries(&self, dir: &RemotePath) -> Arc<Vec<Entry>> {
        let mut cache = self.cache.lock();
        if let Some((when, entries)) = cache.get(dir)
            && when.elapsed() < LISTING_TTL
        {
            return entries.clone();
        }
        // The timer must be created inside the runtime, hence the async block.
        let session = &self.session;
        let fetched = self
            .runtime
            .block_on(async { tokio::time::timeout(LISTING_TIMEOUT, session.list(dir)).await });
        let entries = Arc::new(fetched.ok().and_then(Result::ok).unwrap_or_default());
        cache.insert(dir.clone(), (Instant::now(), entries.clone()));
        entries
    }
}

impl Completer for WharfCompleter {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        let before = &line[..pos.min(line.len())];
        let word = current_word(before);
        let span = Span::new(word.start, pos);
        let is_command = before[..word.start].trim().is_empty();
        let suggestions = if is_command {
            self.commands
                .iter()
                .filter(|name| name.starts_with(&word.text))
                .map(|name| suggestion(name.clone(), span, true))
                .collect()
        } else {
            let command = before.split_whitespace().next().unwrap_or_default();
            let local = completes_locally(command, &before[..word.start]);
            let (dir_part, prefix) = match word.text.rfind('/') {
                Some(cut) => (&word.text[..=cut], &word.text[cut + 1..]),
                None => ("", word.text.as_str()),
            };
            let candidates: Vec<(String, bool)> = if local {
                local_candidates(dir_part)
            } else {
                match self.session.resolve(if dir_part.is_empty() { "." } else { dir_part }) {
                    Ok(dir) => self
                        .remote_entries(&dir)
                        .iter()
                        .map(|e| (e.name.clone(), e.kind == EntryKind::Dir))
                        .collect(),
                    Err(_) => Vec::new(),
                }
            };
            let mut matches: Vec<Suggestion> = candidates
                .into_iter()
                .filter(|(name, _)| {
                    name.starts_with(prefix) && (prefix.starts_with('.') || !name.starts_with('.'))
                })
                // A name with control characters would reach the terminal raw in the menu, and
                // cannot be typed: wildcards reach it.
                .filter(|(name, _)| {
                    matches!(crate::format::shown(name), std::borrow::Cow::Borrowed(_))
                })
                .map(|(name, is_dir)| {
                    let path = format!("{dir_part}{name}{}", if is_dir { "/" } else { "" });
                    suggestion(escape(&path), span, !is_dir)
                })
                .collect();
            matches.sort_by(|a, b| a.value.cmp(&b.value));
            matches
        };
        CompletionResult::fresh(suggestions)
    }
}

/// Whether the word after `earlier` (the line up to it) is a local path: every argument of `lcd` and
/// `lls`; the first path of `put` (its destination is remote) and every path after the first of `get`
/// (its destination is local), as sftp completes them.
fn completes_locally(command: &str, earlier: &str) -> bool {
    if LOCAL_PATH_COMMANDS.contains(&command) {
        return true;
    }
    let paths_before = shlex::split(earlier)
        .unwrap_or_default()
        .iter()
        .skip(1)
        .filter(|word| !word.starts_with('-'))
        .count();
    // `-j N` takes a value that is not a path.
    let paths_before = paths_before.saturating_sub(usize::from(earlier.contains("-j ")));
    if LOCAL_THEN_REMOTE.contains(&command) {
        paths_before == 0
    } else {
        REMOTE_THEN_LOCAL.contains(&command) && paths_before > 0
    }
}

fn suggestion(value: String, span: Span, append_whitespace: bool) -> Suggestion {
    Suggestion { value, span, append_whitespace, ..Default::default() }
}

fn local_candidates(dir_part: &str) -> Vec<(String, bool)> {
    // `~/` completes in the home, as the command will read it.
    let dir = if dir_part.is_empty() { ".".to_owned() } else { crate::local::with_home(dir_part) };
    std::fs::read_dir(Path::new(&dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().is_dir()))
                .collect()
        })
        .unwrap_or_default()
}

/// The word under the cursor: where it starts in the line, and its text with quoting removed.
#[derive(Debug, PartialEq, Eq)]
struct Word {
    start: usize,
    text: String,
}

fn current_word(before: &str) -> Word {
    let mut start = 0;
    let mut text = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (index, c) in before.char_indices() {
        if escaped {
            text.push(c);
            escaped = false;
        } else if c == '\\' && quote != Some('\'') {
            escaped = true;
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            } else {
                text.push(c);
            }
        } else if c == '\'' || c == '"' {
            quote = Some(c);
        } else if c.is_whitespace() {
            start = index + c.len_utf8();
            text.clear();
        } else {
            text.push(c);
        }
    }
    Word { start, text }
}

/// Escapes characters the command-line parser would otherwise split or interpret.
fn escape(path: &str) -> String {
    let mut escaped = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_whitespace() || "'\"\\;#$`".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_word_under_the_cursor() {
        assert_eq!(current_word("ls -l my\\ di"), Word { start: 6, text: "my di".into() });
        assert_eq!(current_word("cd 'a b/c"), Word { start: 3, text: "a b/c".into() });
        assert_eq!(current_word("mk"), Word { start: 0, text: "mk".into() });
        assert_eq!(current_word("ls "), Word { start: 3, text: String::new() });
    }

    #[test]
    fn transfer_destinations_complete_on_the_other_side() {
        assert!(completes_locally("put", "put "));
        assert!(!completes_locally("put", "put a.txt "));
        assert!(!completes_locally("get", "get -r "));
        assert!(completes_locally("get", "get -r logs "));
        assert!(!completes_locally("get", "get -j 4 "));
        assert!(completes_locally("lls", "lls "));
        assert!(!completes_locally("ls", "ls "));
    }

    #[test]
    fn escapes_what_the_parser_would_split() {
        assert_eq!(escape("my dir/a;b"), "my\\ dir/a\\;b");
        let round_trip = shlex::split(&format!("stat {}", escape("x y'z"))).expect("parses");
        assert_eq!(round_trip, ["stat", "x y'z"]);
    }
}
