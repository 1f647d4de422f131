//! The process's limit of open file descriptors, raised at start as Go programs (go-livepeer
//! among them) raise theirs: every connection takes a descriptor, two on the gateway's own
//! ports (its socket, and the copy that closes it with a linger), and the common soft limit
//! of 1,024 would be reached well before `--max-connections` on both ports.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The most the soft limit is raised to, when the hard limit is higher or unlimited.
const MOST: u64 = 1 << 20;

/// Raises the soft limit of open descriptors to the hard limit (at most [`MOST`]); logs what
/// it is, and why not when it could not be raised.
pub(crate) fn raise() {
    let limit = getrlimit(Resource::Nofile);
    let target = limit.maximum.map_or(MOST, |hard| hard.min(MOST));
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= target {
        tracing::debug!(open_files = current, "descriptor limit");
        return;
    }
    let raised = Rlimit { current: Some(target), maximum: limit.maximum };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(from = current, to = target, "descriptor limit raised"),
        Err(e) => {
            tracing::warn!(limit = current, error = %e, "could not raise the descriptor limit")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        if !crate::alone::run_here("fd_limit::tests::the_soft_limit_is_raised_to_the_hard_one") {
            return;
        }
        let before = getrlimit(Resource::Nofile);
        // Lowered first, so that the raise has something to do whatever the test runner set.
        let low = Rlimit { current: Some(256), maximum: before.maximum };
        setrlimit(Resource::Nofile, low).unwrap();
        raise();
        let after = getrlimit(Resource::Nofile);
        let want = before.maximum.map_or(MOST, |hard| hard.min(MOST));
        assert_eq!(after.current, Some(want));
        assert_eq!(after.maximum, before.maximum, "the hard limit is left alone");
    }
}
