//! The process's limit on open files, raised at start from the soft limit to the hard one.
//!
//! Every upload in progress holds its partial file open, and one connection may have
//! `server.max_requests_in_flight` requests (512 by default) in flight: two busy clients pass the
//! soft limit service managers often set (1,024 under systemd), and past it every create fails
//! with EMFILE. The hard limit is the administrator's to set (`LimitNOFILE=`, `ulimit -Hn`); the
//! soft one exists for programs that never expect many files, which a file server is not.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Open files one busy connection may hold besides its uploads' partials (the file it reads for
/// a download, directories being listed or synced), for [`OpenFiles::busy_connections`].
const SPARE_PER_CONNECTION: u64 = 16;

/// The open-files limit before and after [`raise_to_hard_limit`]; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: Option<u64>,
    pub now: Option<u64>,
}

impl OpenFiles {
    /// How many connections, each with `in_flight` uploads open, the limit holds (`None`: any).
    pub fn busy_connections(&self, in_flight: u64) -> Option<u64> {
        self.now.map(|now| now / in_flight.saturating_add(SPARE_PER_CONNECTION))
    }
}

/// Raises the soft limit on open files to the hard limit. Where that fails (a hard limit of
/// "unlimited", which Linux refuses as a soft one), the limit stays as it was.
pub fn raise_to_hard_limit() -> OpenFiles {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let raised = current != maximum
        && setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum }).is_ok();
    OpenFiles { before: current, now: if raised { maximum } else { current } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_holds_as_many_busy_connections_as_their_files_fit() {
        let limit = |now| OpenFiles { before: Some(1024), now };
        assert_eq!(limit(None).busy_connections(256), None);
        assert_eq!(limit(Some(1024)).busy_connections(256), Some(3));
        assert_eq!(limit(Some(4 * 272)).busy_connections(256), Some(4));
        assert_eq!(limit(Some(u64::MAX)).busy_connections(u64::MAX), Some(1));
    }
}
