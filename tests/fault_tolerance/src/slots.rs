//! A counting semaphore over the stacks of one test binary: each stack runs
//! several processes, and a 2-core CI machine runs two such tests well but
//! not eight. Cargo runs test binaries one after another, so this bounds
//! the whole package.

use std::sync::{Condvar, Mutex};

/// Stacks allowed at once (override with `FT_MAX_STACKS`).
pub const MAX_STACKS: usize = 2;

static IN_USE: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

fn limit() -> usize {
    std::env::var("FT_MAX_STACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_STACKS)
}

/// A held slot; released on drop (also when the test panicked).
#[derive(Debug)]
pub struct Slot(());

/// Blocks until a slot is free.
pub fn acquire() -> Slot {
    let limit = limit();
    let mut used = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    while *used >= limit {
        used = FREED.wait(used).unwrap_or_else(|e| e.into_inner());
    }
    *used += 1;
    Slot(())
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        FREED.notify_one();
    }
}
