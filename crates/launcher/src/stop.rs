//! Stopping processes the one way every launcher here does it: one SIGTERM
//! each (a second would make batchline exit at once, without draining),
//! a wait of up to `grace` for all of them together, then SIGKILL for
//! whoever still runs.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::error::Result;
use crate::proc::{POLL, Proc};

/// How long to wait after SIGKILL before giving up on a process.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// Something that can be stopped: a child the launcher owns, or a detached
/// service known by its pid file.
pub trait Stoppable {
    fn label(&self) -> &str;
    fn pid(&self) -> u32;
    /// Still running (reaps it when it can).
    fn running(&mut self) -> bool;
    fn signal(&mut self, signal: Signal) -> Result<()>;
}

/// What [`stop_all`] did, for the caller to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopEvent {
    /// SIGTERM sent.
    Terminating { name: String, pid: u32 },
    /// Still running after the grace period: SIGKILL sent.
    Killing {
        name: String,
        pid: u32,
        after: Duration,
    },
    /// Still running even after SIGKILL.
    Outlived { name: String, pid: u32 },
}

/// Stops every running target; returns the names that needed SIGKILL. A
/// signal that cannot be sent leaves the process running, which the waits
/// and `on` then report; the others are stopped regardless.
pub fn stop_all<T: Stoppable>(
    targets: &mut [T],
    grace: Duration,
    on: &mut dyn FnMut(StopEvent),
) -> Vec<String> {
    let all: Vec<usize> = (0..targets.len()).collect();
    let stopping = still_running(targets, &all);
    for &i in &stopping {
        let t = &mut targets[i];
        let _ = t.signal(Signal::SIGTERM);
        on(StopEvent::Terminating {
            name: t.label().to_owned(),
            pid: t.pid(),
        });
    }
    if wait_gone(targets, &stopping, grace) {
        return Vec::new();
    }
    let late = still_running(targets, &stopping);
    for &i in &late {
        let t = &mut targets[i];
        on(StopEvent::Killing {
            name: t.label().to_owned(),
            pid: t.pid(),
            after: grace,
        });
        let _ = t.signal(Signal::SIGKILL);
    }
    if !wait_gone(targets, &late, AFTER_KILL) {
        for i in still_running(targets, &late) {
            on(StopEvent::Outlived {
                name: targets[i].label().to_owned(),
                pid: targets[i].pid(),
            });
        }
    }
    late.iter()
        .map(|&i| targets[i].label().to_owned())
        .collect()
}

/// Those of `which` that still run.
fn still_running<T: Stoppable>(targets: &mut [T], which: &[usize]) -> Vec<usize> {
    which
        .iter()
        .copied()
        .filter(|&i| targets[i].running())
        .collect()
}

/// Waits until none of `which` runs, for at most `timeout`.
fn wait_gone<T: Stoppable>(targets: &mut [T], which: &[usize], timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if which.iter().all(|&i| !targets[i].running()) {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

impl Stoppable for Proc {
    fn label(&self) -> &str {
        self.name()
    }

    fn pid(&self) -> u32 {
        Proc::pid(self)
    }

    fn running(&mut self) -> bool {
        self.is_alive()
    }

    fn signal(&mut self, signal: Signal) -> Result<()> {
        Proc::signal(self, signal)
    }
}

impl<T: Stoppable> Stoppable for &mut T {
    fn label(&self) -> &str {
        (**self).label()
    }

    fn pid(&self) -> u32 {
        (**self).pid()
    }

    fn running(&mut self) -> bool {
        (**self).running()
    }

    fn signal(&mut self, signal: Signal) -> Result<()> {
        (**self).signal(signal)
    }
}
