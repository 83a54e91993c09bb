//! Following log files the way `tail -F` does, each line printed on stdout
//! with a prefix (`[worker-2] …`): a file that does not exist yet is waited
//! for, one that is truncated is read again from its start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a follower looks for new bytes.
const POLL: Duration = Duration::from_millis(100);

/// Where following starts.
#[derive(Clone, Copy, Debug)]
pub enum From {
    /// At this byte offset (what was there before is not shown).
    Offset(u64),
    /// With the last `n` lines already there.
    LastLines(usize),
}

/// One file being followed by a thread of its own.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Follower {
    /// Follows `path` from `from`, printing each complete line as
    /// `PREFIX line`.
    pub fn start(path: &Path, from: From, prefix: String) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = path.to_owned();
        let thread = std::thread::spawn(move || follow(&path, from, &prefix, &flag));
        Follower { stop, thread }
    }

    /// Prints what is there now, then stops.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // A follower that panicked has nothing left to print.
        let _ = self.thread.join();
    }
}

fn follow(path: &PathBuf, from: From, prefix: &str, stop: &AtomicBool) {
    let mut pos = match from {
        From::Offset(n) => n,
        From::LastLines(n) => start_of_last_lines(path, n),
    };
    let mut partial = Vec::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if let Ok(mut file) = File::open(path) {
            let len = file.metadata().map_or(pos, |m| m.len());
            if len < pos {
                pos = 0; // truncated: read it again
                partial.clear();
            }
            if len > pos {
                pos += read_from(&mut file, pos, &mut partial);
                print_lines(&mut partial, prefix);
            }
        }
        if stopping {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Appends the bytes of `file` from `pos` to `buf`; returns how many.
fn read_from(file: &mut File, pos: u64, buf: &mut Vec<u8>) -> u64 {
    if file.seek(SeekFrom::Start(pos)).is_err() {
        return 0;
    }
    let before = buf.len();
    let _ = file.read_to_end(buf);
    (buf.len() - before) as u64
}

/// Prints the complete lines of `buf` with `prefix`, keeping a partial last
/// line for later.
fn print_lines(buf: &mut Vec<u8>, prefix: &str) {
    let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let mut out = std::io::stdout().lock();
    for line in buf[..end].split(|b| *b == b'\n') {
        // stdout gone (a closed pipe): nothing to do but drop the line.
        let _ = writeln!(out, "{prefix}{}", String::from_utf8_lossy(line));
    }
    let _ = out.flush();
    buf.drain(..=end);
}

/// The offset where the last `n` lines of `path` begin (0 if it has fewer).
pub fn start_of_last_lines(path: &Path, n: usize) -> u64 {
    let bytes = std::fs::read(path).unwrap_or_default();
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if n == 0 {
        return bytes.len() as u64;
    }
    body.iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i as u64 + 1)
}

/// The last `n` lines of `path`, each with `prefix`.
pub fn last_lines(path: &Path, n: usize, prefix: &str) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = start_of_last_lines(path, n) as usize;
    let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default());
    text.lines().map(|l| format!("{prefix}{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_start_where_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(start_of_last_lines(&path, 2), 2);
        assert_eq!(start_of_last_lines(&path, 5), 0);
        assert_eq!(start_of_last_lines(&path, 0), 6);
        assert_eq!(last_lines(&path, 2, "[x] "), "[x] b\n[x] c\n");
        std::fs::write(&path, "a\nb").unwrap();
        assert_eq!(last_lines(&path, 1, "> "), "> b\n");
        assert_eq!(last_lines(&dir.path().join("none"), 3, ""), "");
    }
}
