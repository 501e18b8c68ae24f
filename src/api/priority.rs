//! The API's thread runs at the lowest scheduling priority, so that a storm of requests takes
//! only CPU the pipeline leaves idle: when both compete for a core, the kernel gives it to the
//! workers, the collector and the sinks; on an idle machine the API answers at once.

use std::fmt;

/// What the calling thread got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Priority {
    /// Linux `SCHED_IDLE`: runs only on CPU no normal thread wants (weight 3 against 1024).
    Idle,
    /// `SCHED_IDLE` was refused; nice 19 on this thread instead (weight 15 against 1024).
    Nice19,
    /// The OS refused both, or cannot lower one thread: the API competes as an equal.
    Unchanged(String),
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Priority::Idle => f.write_str("SCHED_IDLE"),
            Priority::Nice19 => f.write_str("nice 19"),
            Priority::Unchanged(why) => write!(f, "unchanged ({why})"),
        }
    }
}

/// Lowers the calling thread (only it, not the process) to the lowest priority it can get.
#[cfg(target_os = "linux")]
pub fn lower_this_thread() -> Priority {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; param points to a live local.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return Priority::Idle;
    }
    let idle_error = std::io::Error::last_os_error();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone.
    // SAFETY: plain integers; no memory is passed.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) } == 0 {
        return Priority::Nice19;
    }
    let nice_error = std::io::Error::last_os_error();
    Priority::Unchanged(format!("SCHED_IDLE: {idle_error}; nice 19: {nice_error}"))
}

#[cfg(not(target_os = "linux"))]
pub fn lower_this_thread() -> Priority {
    Priority::Unchanged("per-thread priority is only set on Linux".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_is_lowered_alone() {
        let lowered = std::thread::spawn(|| {
            let got = lower_this_thread();
            // SAFETY: pid 0 is the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            (got, policy)
        })
        .join()
        .expect("thread");
        match lowered {
            (Priority::Idle, policy) => assert_eq!(policy, libc::SCHED_IDLE),
            (Priority::Nice19, policy) => assert_ne!(policy, libc::SCHED_IDLE),
            (Priority::Unchanged(why), _) => assert!(!why.is_empty()),
        }
        // SAFETY: pid 0 is the calling thread.
        let here = unsafe { libc::sched_getscheduler(0) };
        assert_ne!(here, libc::SCHED_IDLE, "the spawning thread keeps its priority");
    }
}
