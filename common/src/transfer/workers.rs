//! The threads that do the disk work and hashing of every transfer in the process: a fixed few.
//!
//! Transfers used to get blocking threads of their own for as long as they ran (a writer per
//! upload, a reader per lane). A server with a hundred transfers then had a hundred and fifty
//! threads: each kept its own allocator cache (the soak run's server reached 650 to 950 MiB of RSS
//! where heaptrack counted at most about 200 MiB live), and the kernel shared the two cores among
//! all of them equally, so the runtime threads that answer `ls` got a sliver (p50 of 10 ms with
//! eight bulk transfers). Here each
//! transfer submits short jobs (write and hash one chunk, read one chunk, hash a few MiB), which the
//! threads take in turn: every transfer moves and the thread count stays fixed. A server can also
//! lower their priority, so that its runtime comes first when the CPU is short.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::sync::oneshot;

use super::TransferError;

/// Transfer threads: two per core, and at least this many. Measured with the soak run on 2 cores:
/// with 4, eight bulk transfers' jobs crowded out the small transfers of a hundred clients (495
/// operations/s against 763 with 8), and 16 did no better than 8 (617).
pub const MIN_TRANSFER_THREADS: usize = 8;
/// Niceness the transfer threads take when they start (0 is normal, 19 the lowest priority): 0
/// unless the process set another with [`set_thread_niceness`] before its first transfer.
static NICENESS: AtomicI32 = AtomicI32::new(0);

/// Sets the niceness of the transfer threads, which start with the first transfer: the server's
/// `transfer.thread_niceness`, so that its runtime, which answers every session, can be made to win
/// the CPU when both want it.
pub fn set_thread_niceness(nice: i32) {
    NICENESS.store(nice, Ordering::Relaxed);
}

type Job = Box<dyn FnOnce() + Send>;

static QUEUE: OnceLock<crossbeam_channel::Sender<Job>> = OnceLock::new();

/// How many transfer threads this process runs.
fn thread_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).max(MIN_TRANSFER_THREADS)
}

/// The queue every transfer thread takes jobs from (a channel with many receivers, so no thread
/// holds a lock while it waits).
fn queue() -> &'static crossbeam_channel::Sender<Job> {
    QUEUE.get_or_init(|| {
        let (jobs, incoming) = crossbeam_channel::unbounded::<Job>();
        for n in 0..thread_count() {
            let incoming = incoming.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("wharf-transfer-{n}"))
                .spawn(move || work(&incoming));
            if let Err(err) = spawned {
                // With no thread at all, jobs wait forever: better to say so loudly at once.
                assert!(n > 0, "cannot start any transfer thread: {err}");
            }
        }
        jobs
    })
}

fn work(incoming: &crossbeam_channel::Receiver<Job>) {
    // On Linux, niceness belongs to each thread: "the current process" here is this thread. Failing
    // (a process already nicer than this) leaves the thread as it was, which is fine.
    let _ = rustix::process::setpriority_process(None, NICENESS.load(Ordering::Relaxed));
    for job in incoming.iter() {
        job();
    }
}

/// Runs `job` on a transfer thread without waiting for it.
pub fn detach(job: impl FnOnce() + Send + 'static) {
    // Fails only if no thread ever started, which `queue` already reported.
    let _ = queue().send(Box::new(job));
}

/// Runs `job` on a transfer thread and returns its result. A panic in the job becomes an error
/// of the transfer rather than taking the thread down.
pub async fn run<T, F>(job: F) -> Result<T, TransferError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(job)));
    });
    if queue().send(job).is_err() {
        return Err(TransferError::ThreadsStopped);
    }
    match result.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(TransferError::Panicked),
        Err(_) => Err(TransferError::ThreadsStopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_off_the_runtime_at_the_set_priority_and_panics_become_errors() {
        // The only test in this crate that starts the transfer threads.
        set_thread_niceness(7);
        let (name, nice) = run(|| {
            let nice = rustix::process::getpriority_process(None).expect("priority");
            (std::thread::current().name().map(str::to_owned), nice)
        })
        .await
        .expect("job");
        assert!(name.is_some_and(|name| name.starts_with("wharf-transfer-")));
        assert_eq!(nice, 7);
        let panicked = run(|| panic!("boom")).await;
        assert!(matches!(panicked, Err(TransferError::Panicked)), "{panicked:?}");
        assert_eq!(run(|| 2 + 2).await.expect("still running"), 4, "the thread survived");
    }
}
