//! What `/proc` says about a process: whether it runs (a zombie does not),
//! whether it carries a marker in its environment (so a reused pid is not
//! mistaken for a service), and its peak resident set. Plus the tail of a
//! log file, for error messages.

use std::path::Path;

/// True while `pid` exists and is not a zombie waiting for its parent.
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may hold spaces.
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// True when `pid` runs and its environment holds `key=value`: the process
/// a launcher started with that marker, not another one that got its pid.
/// (A child that has not exec'd yet shows an empty environment.)
pub fn carries(pid: u32, key: &str, value: &str) -> bool {
    if !is_running(pid) {
        return false;
    }
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{key}={value}");
    environ
        .split(|b| *b == 0)
        .any(|entry| entry == wanted.as_bytes())
}

/// Peak resident set (`VmHWM`) of a live process, in MiB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm_kb(&status).map(|kb| kb as f64 / 1024.0)
}

fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The last `n` lines of a file ("" when it cannot be read): for messages
/// about a process that failed.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    tail_of(&String::from_utf8_lossy(&text), n)
}

/// The last `n` lines of `text`.
pub fn tail_of(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_has_a_peak_rss() {
        let me = std::process::id();
        assert!(is_running(me));
        assert!(peak_rss_mb(me).unwrap() > 0.0);
        assert!(!is_running(u32::MAX));
        assert_eq!(
            parse_vm_hwm_kb("Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t   1234 kB\n"),
            Some(1234)
        );
        assert_eq!(parse_vm_hwm_kb("Name:\tx\n"), None);
    }

    #[test]
    fn a_marker_is_found_only_in_the_process_that_has_it() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("LAUNCHER_TEST_MARK", "yes")
            .spawn()
            .unwrap();
        // Right after spawn the child may not have exec'd yet (its environ
        // is still empty): the marker shows once it has.
        let mut polls = 0;
        while !carries(child.id(), "LAUNCHER_TEST_MARK", "yes") {
            polls += 1;
            assert!(polls < 1000, "the marker never showed");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!carries(child.id(), "LAUNCHER_TEST_MARK", "no"));
        assert!(!carries(std::process::id(), "LAUNCHER_TEST_MARK", "yes"));
        child.kill().unwrap();
        // Dead but not yet reaped: a zombie does not count as running.
        let mut polls = 0;
        while is_running(child.id()) {
            polls += 1;
            assert!(polls < 1000, "a SIGKILLed sleep still runs");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            child.try_wait().unwrap().is_some(),
            "it was a zombie, now reaped"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_of("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_of("a", 5), "a");
        assert_eq!(tail(Path::new("/nonexistent/x"), 3), "");
    }
}
