//! Signals to a child's process group (every child leads one), through
//! `nix`, and signal names as users type them (`KILL`, `SIGKILL`, `9`).

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Sends `signal` to the process group `pid` leads. A group that is gone
/// (its processes exited in the meantime) is not an error: there is
/// nothing left to signal. `name` is for the error.
pub fn send(name: &str, pid: u32, signal: Signal) -> Result<()> {
    let group = i32::try_from(pid).map_err(|_| Error::Invalid(format!("{pid} is not a pid")))?;
    match killpg(Pid::from_raw(group), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(source) => Err(Error::Signal {
            name: name.to_owned(),
            pid,
            signal: signal.as_str(),
            source,
        }),
    }
}

/// `KILL`, `SIGKILL`, `kill` or `9` → SIGKILL.
pub fn parse(text: &str) -> Result<Signal> {
    let bad = || {
        Error::Invalid(format!(
            "unknown signal {text:?} (e.g. KILL, TERM, STOP, CONT)"
        ))
    };
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_type() {
        for text in ["KILL", "SIGKILL", "kill", "9"] {
            assert_eq!(parse(text).unwrap(), Signal::SIGKILL, "{text}");
        }
        assert_eq!(parse("stop").unwrap(), Signal::SIGSTOP);
        assert!(parse("NOPE").is_err());
        assert!(parse("999").is_err());
    }
}
