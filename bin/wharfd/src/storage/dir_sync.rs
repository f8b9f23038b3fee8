//! Group commit of directory fsyncs. An upload is durable under its name only once the directory
//! holding the name is synced after the rename; when many uploads land in one directory at once,
//! one fsync that starts after all their renames makes all of them durable.
//!
//! The rule a caller relies on: [`DirSyncs::sync`] returns only after a sync of that directory
//! that *started* after the call did, so it covers every change the caller made before calling.
//! A sync already running when the caller arrives may have started before the caller's rename,
//! so the caller waits for it to end and then for the next one, which the first of the waiting
//! callers starts on behalf of all of them.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// The directories being synced now, by device and inode.
#[derive(Debug, Default)]
pub struct DirSyncs {
    groups: Mutex<HashMap<(u64, u64), Arc<Group>>>,
}

impl DirSyncs {
    /// Makes everything done in `dir` before this call durable (fsync, shared with other callers
    /// for the same directory).
    pub fn sync(&self, dir: &std::fs::File) -> io::Result<()> {
        let meta = dir.metadata()?;
        let key = (meta.dev(), meta.ino());
        let group = {
            let mut groups = self.groups.lock();
            let group = groups.entry(key).or_default().clone();
            group.state.lock().callers += 1;
            group
        };
        let result = group.run(|| dir.sync_all()).map(drop);
        let mut groups = self.groups.lock();
        let mut state = group.state.lock();
        state.callers -= 1;
        if state.callers == 0 {
            groups.remove(&key);
        }
        result
    }
}

/// The syncs of one directory: how many started and ended, and whether the last one failed.
#[derive(Debug, Default)]
struct Group {
    state: Mutex<GroupState>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct GroupState {
    started: u64,
    /// The last sync that ended; one is running while it is behind `started`.
    finished: u64,
    /// The last sync that failed, if any: its callers fail with it.
    failed: Option<u64>,
    callers: usize,
}

impl Group {
    /// Returns once a sync that started after this call has ended, running `sync` itself when no
    /// other caller is about to: the number of the sync that covered the call, or its error.
    fn run(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<u64> {
        let mut state = self.state.lock();
        let needed = state.started + 1;
        loop {
            if state.finished >= needed {
                return match state.failed {
                    Some(failed) if failed >= needed => {
                        Err(io::Error::other("syncing the directory failed"))
                    }
                    _ => Ok(state.finished),
                };
            }
            if state.finished == state.started {
                // Nothing started since this call began: the next sync is the one needed.
                state.started += 1;
                let number = state.started;
                drop(state);
                let result = sync();
                let mut state = self.state.lock();
                state.finished = number;
                if result.is_err() {
                    state.failed = Some(number);
                }
                self.ended.notify_all();
                return result.map(|()| number);
            }
            self.ended.wait(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use super::*;

    /// Callers arriving together, each noting when it arrived; each sync notes when it started.
    fn run_together(
        callers: usize,
        sync: impl Fn() -> io::Result<()> + Sync,
    ) -> (Vec<(Instant, io::Result<u64>)>, Vec<Instant>) {
        let (group, gate) = (Group::default(), Barrier::new(callers));
        let starts = Mutex::new(Vec::new());
        let outcomes = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..callers)
                .map(|_| {
                    scope.spawn(|| {
                        gate.wait();
                        let arrived = Instant::now();
                        let covered = group.run(|| {
                            starts.lock().push(Instant::now());
                            sync()
                        });
                        (arrived, covered)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("caller")).collect()
        });
        (outcomes, starts.into_inner())
    }

    #[test]
    fn each_caller_is_covered_by_a_sync_that_started_after_it_arrived_and_syncs_are_shared() {
        let callers = 16;
        let (outcomes, starts) = run_together(callers, || {
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        });
        for (arrived, covered) in &outcomes {
            let number = *covered.as_ref().expect("synced");
            let started = starts[usize::try_from(number - 1).expect("small")];
            assert!(started >= *arrived, "sync {number} began before its caller arrived");
        }
        // Sixteen callers arriving together: the first starts a sync, the rest wait for it and
        // then share the next one (a scheduler this slow could need a few more, never sixteen).
        assert!(starts.len() < callers, "{} syncs for {callers} callers", starts.len());
    }

    #[test]
    fn a_failed_sync_fails_every_caller_it_was_to_cover() {
        let (outcomes, starts) = run_together(8, || Err(io::Error::other("the disk said no")));
        assert!(!starts.is_empty());
        for (_, covered) in outcomes {
            assert!(covered.is_err(), "a caller was told its directory was synced: {covered:?}");
        }
    }

    #[test]
    fn a_real_directory_syncs_and_its_group_is_dropped_after() {
        let dir = tempfile::tempdir().expect("temp dir");
        let handle = std::fs::File::open(dir.path()).expect("open the directory");
        let syncs = DirSyncs::default();
        syncs.sync(&handle).expect("fsync");
        syncs.sync(&handle).expect("fsync again");
        assert!(syncs.groups.lock().is_empty(), "groups are kept only while in use");
    }
}
