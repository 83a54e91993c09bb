//! [`StatefulWorkerManager`]: owns a state directory (locked), one append
//! log per key, the tombstone log, and the in-memory state and dedupe set
//! of every live key. Rows reach the OS through a `BufWriter` per key and
//! become durable only in [`commit`](StatefulWorkerManager::commit).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::RowEncoder;
use crate::fsutil::{remove_if_exists, sync_dir};
use crate::key::{DATA_SUFFIX, TMP_SUFFIX, data_path, key_of, validate_key, validate_msg_id};
use crate::lock::DirLock;
use crate::rebuild::{Rebuilt, rebuild_key};
use crate::state::KeyedState;
use crate::tombstones::{Loaded, TOMBSTONE_LOG, TombstoneLog};

/// Key files kept open for appending before clean ones are closed.
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;

/// What [`StatefulWorkerManager::process`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    /// Appended and folded into the key's state (durable after `commit`).
    Applied,
    /// This msg_id was already applied for this key: dropped.
    Duplicate,
    /// The key was completed earlier (a late duplicate after cleanup):
    /// dropped, and no file is created.
    AlreadyCompleted,
}

/// What [`StatefulWorkerManager::commit`] made durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitSummary {
    /// Rows appended since the previous commit.
    pub rows: usize,
    /// Key files flushed and fsynced (one `sync_data` each).
    pub files_synced: usize,
}

/// A line moved out of a log because its CRC failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedLine {
    /// The log it came from: a key's `{key}.csv`, or `tombstones.log`.
    pub file: String,
    /// Its 1-based line number in that file at the time.
    pub line: u64,
}

/// What [`StatefulWorkerManager::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebuildReport {
    /// Live keys rebuilt from their files.
    pub keys: usize,
    /// Rows applied.
    pub rows: u64,
    /// Files whose torn last line was cut away.
    pub truncated: u64,
    /// Lines that failed their CRC before the last line: quarantined.
    pub corrupt: u64,
    /// Rows skipped because their msg_id was already applied.
    pub duplicates: u64,
    /// Completed keys known from the tombstone log.
    pub tombstones: usize,
    /// Files of completed keys left by a crash inside `complete`: deleted.
    pub leftovers_removed: usize,
    /// Tombstone lines that were torn or corrupt (a corrupt one may have
    /// been a real tombstone: that key could be started again).
    pub tombstone_lines_dropped: u64,
    /// Keys whose file had a torn tail.
    pub truncated_keys: Vec<String>,
    /// Every quarantined line, key logs and tombstone log.
    pub quarantined: Vec<QuarantinedLine>,
}

impl RebuildReport {
    /// A report that starts with what the tombstone log held and lost;
    /// logs lost tombstones, since those keys could be started again.
    fn from_tombstones(loaded: &Loaded) -> Self {
        if !loaded.corrupt.is_empty() {
            tracing::error!(lines = ?loaded.corrupt, "tombstone lines failed their CRC: those keys are no longer known as completed");
        }
        RebuildReport {
            tombstones: loaded.keys.len(),
            tombstone_lines_dropped: loaded.corrupt.len() as u64 + u64::from(loaded.torn),
            quarantined: loaded
                .corrupt
                .iter()
                .map(|&line| QuarantinedLine {
                    file: TOMBSTONE_LOG.to_owned(),
                    line,
                })
                .collect(),
            ..RebuildReport::default()
        }
    }

    /// Counts one live key rebuilt from its file.
    fn add_key<S>(&mut self, key: &str, r: &Rebuilt<S>) {
        self.keys += 1;
        self.rows += r.rows;
        self.duplicates += r.duplicates;
        self.corrupt += r.quarantined.len() as u64;
        self.quarantined
            .extend(r.quarantined.iter().map(|&line| QuarantinedLine {
                file: format!("{key}{DATA_SUFFIX}"),
                line,
            }));
        if r.truncated {
            self.truncated += 1;
            self.truncated_keys.push(key.to_owned());
        }
    }

    /// Logs the totals of a finished rebuild of `dir`.
    fn log(&self, dir: &Path) {
        tracing::info!(
            dir = %dir.display(),
            keys = self.keys,
            rows = self.rows,
            truncated = self.truncated,
            corrupt = self.corrupt,
            duplicates = self.duplicates,
            tombstones = self.tombstones,
            "state rebuilt"
        );
    }
}

struct Entry<S> {
    state: S,
    seen: HashSet<Box<str>>,
    rows: u64,
    duplicates: u64,
    writer: Option<BufWriter<File>>,
    /// Appended to since the last commit (and listed in `dirty`).
    dirty: bool,
}

impl<S: Default> Default for Entry<S> {
    fn default() -> Self {
        Entry {
            state: S::default(),
            seen: HashSet::new(),
            rows: 0,
            duplicates: 0,
            writer: None,
            dirty: false,
        }
    }
}

impl<S> Entry<S> {
    /// A live key as its rebuild left it, with no file open yet.
    fn rebuilt(r: Rebuilt<S>) -> Self {
        Entry {
            state: r.state,
            seen: r.seen,
            rows: r.rows,
            duplicates: r.duplicates,
            writer: None,
            dirty: false,
        }
    }
}

/// Keyed state, durable in CSV append logs, rebuilt after a crash.
///
/// One manager owns a directory at a time (see [`open`](Self::open)). Use
/// it from one thread; it does blocking file I/O (call it from
/// `spawn_blocking` / `block_in_place` in async code).
pub struct StatefulWorkerManager<S: KeyedState> {
    dir: PathBuf,
    _lock: DirLock,
    live: HashMap<String, Entry<S>>,
    completed: HashSet<String>,
    tombstones: TombstoneLog,
    /// Keys appended to since the last commit.
    dirty: Vec<String>,
    /// A key file was created since the last commit.
    dir_dirty: bool,
    open_writers: usize,
    max_open_writers: usize,
    uncommitted_rows: usize,
    poisoned: Option<String>,
    encoder: RowEncoder,
    line: Vec<u8>,
}

impl<S: KeyedState> fmt::Debug for StatefulWorkerManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatefulWorkerManager")
            .field("dir", &self.dir)
            .field("keys", &self.live.len())
            .field("completed", &self.completed.len())
            .field("uncommitted_rows", &self.uncommitted_rows)
            .field("open_writers", &self.open_writers)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl<S: KeyedState> StatefulWorkerManager<S> {
    /// Creates `dir` if needed, locks it, and rebuilds every key from its
    /// `{key}.csv` by the rebuild rules. Fails with [`Error::Locked`] when
    /// another manager owns the directory, and with [`Error::Decode`] when
    /// a CRC-valid row does not decode as `S::Row`.
    pub fn open(dir: impl AsRef<Path>) -> Result<(Self, RebuildReport)> {
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let lock = DirLock::acquire(&dir)?;
        let (tombstones, loaded) = TombstoneLog::load(&dir)?;
        let mut report = RebuildReport::from_tombstones(&loaded);
        let (keys, mut dir_changed) = list_keys(&dir)?;
        let mut live = HashMap::with_capacity(keys.len());
        for key in keys {
            if loaded.keys.contains(&key) {
                remove_rebuild_leftover(data_path(&dir, &key))?;
                tracing::info!(key, "deleted the leftover file of a completed key");
                report.leftovers_removed += 1;
                dir_changed = true;
                continue;
            }
            let r = rebuild_key::<S>(&dir, &key)?;
            report.add_key(&key, &r);
            live.insert(key, Entry::rebuilt(r));
        }
        if dir_changed {
            sync_dir(&dir).map_err(|source| Error::WriteFailed {
                path: dir.clone(),
                source,
            })?;
        }
        report.log(&dir);
        let manager = StatefulWorkerManager {
            dir,
            _lock: lock,
            live,
            completed: loaded.keys,
            tombstones,
            dirty: Vec::new(),
            dir_dirty: false,
            open_writers: 0,
            max_open_writers: DEFAULT_MAX_OPEN_FILES,
            uncommitted_rows: 0,
            poisoned: None,
            encoder: RowEncoder::default(),
            line: Vec::with_capacity(256),
        };
        Ok((manager, report))
    }

    /// Appends `row` for (`key`, `msg_id`) and folds it into the key's
    /// state, unless the msg_id was seen for this key or the key was
    /// completed. O(1): dedupe is an in-memory set. Nothing is durable until
    /// [`commit`](Self::commit); ack the message only after that.
    ///
    /// Errors: an invalid key or msg_id, a row that cannot be one CSV line,
    /// or a key file that cannot be created change nothing. A failed write
    /// poisons the manager ([`Error::is_fatal`]).
    pub fn process(&mut self, key: &str, msg_id: &str, row: S::Row) -> Result<Processed> {
        self.check_usable()?;
        validate_key(key)?;
        validate_msg_id(msg_id)?;
        if !self.completed.is_empty() && self.completed.contains(key) {
            return Ok(Processed::AlreadyCompleted);
        }
        // Close clean files first if at the cap (and there are clean ones).
        if self.open_writers >= self.max_open_writers && self.open_writers > self.dirty.len() {
            self.close_clean_writers();
        }
        let existing = match self.live.get_mut(key) {
            Some(entry) if entry.seen.contains(msg_id) => {
                entry.duplicates += 1;
                return Ok(Processed::Duplicate);
            }
            other => other,
        };
        self.line.clear();
        self.encoder.encode(&mut self.line, msg_id, &row)?;

        let is_new = existing.is_none();
        let entry = match existing {
            Some(entry) => entry,
            None => self.live.entry(key.to_owned()).or_default(),
        };
        let writer = match &mut entry.writer {
            Some(w) => w,
            slot @ None => {
                let path = data_path(&self.dir, key);
                match open_append(&path) {
                    Ok((file, created)) => {
                        self.open_writers += 1;
                        self.dir_dirty |= created;
                        slot.insert(BufWriter::with_capacity(64 * 1024, file))
                    }
                    Err(e) => {
                        if is_new {
                            self.live.remove(key);
                        }
                        return Err(Error::Io { path, source: e });
                    }
                }
            }
        };
        if let Err(source) = writer.write_all(&self.line) {
            let path = data_path(&self.dir, key);
            return Err(poison(&mut self.poisoned, path, source));
        }
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(key.to_owned());
        }
        entry.seen.insert(msg_id.into());
        entry.state.apply(&row);
        entry.rows += 1;
        self.uncommitted_rows += 1;
        Ok(Processed::Applied)
    }

    /// Makes every row appended since the last commit durable: one flush and
    /// one `sync_data` per touched key file (run on up to 32 threads at once
    /// when several files are touched), and one directory fsync if a key
    /// file was created (group commit). Any failure poisons the manager:
    /// the caller must exit and rebuild, never retry.
    pub fn commit(&mut self) -> Result<CommitSummary> {
        self.check_usable()?;
        let dirty = std::mem::take(&mut self.dirty);
        // Every buffered row goes to the OS first; then the fsyncs run
        // side by side, so the file system can fold them into one journal
        // commit instead of paying for each in turn.
        for key in &dirty {
            let Some(writer) = self.live.get_mut(key).and_then(|e| {
                e.dirty = false;
                e.writer.as_mut()
            }) else {
                continue;
            };
            if let Err(source) = writer.flush() {
                return Err(poison(
                    &mut self.poisoned,
                    data_path(&self.dir, key),
                    source,
                ));
            }
        }
        let files: Vec<(&String, &File)> = dirty
            .iter()
            .filter_map(|k| {
                let writer = self.live.get(k)?.writer.as_ref()?;
                Some((k, writer.get_ref()))
            })
            .collect();
        if let Err((i, source)) = sync_all_data(&files) {
            let path = data_path(&self.dir, files[i].0);
            return Err(poison(&mut self.poisoned, path, source));
        }
        let summary = CommitSummary {
            rows: self.uncommitted_rows,
            files_synced: files.len(),
        };
        if self.dir_dirty {
            if let Err(source) = sync_dir(&self.dir) {
                return Err(poison(&mut self.poisoned, self.dir.clone(), source));
            }
            self.dir_dirty = false;
        }
        self.uncommitted_rows = 0;
        Ok(summary)
    }

    /// Finalizes `key`: commits all pending rows (of every key), appends a durable tombstone,
    /// forgets the key's state and deletes its file (then fsyncs the
    /// directory). Later messages for the key are
    /// [`AlreadyCompleted`](Processed::AlreadyCompleted). Completing a key
    /// twice only commits. Failures after the commit poison the manager; the
    /// rebuild then finishes the job (a tombstoned key's file is deleted).
    pub fn complete(&mut self, key: &str) -> Result<()> {
        self.check_usable()?;
        validate_key(key)?;
        self.commit()?;
        if self.completed.contains(key) {
            return Ok(());
        }
        match self.tombstones.append(key) {
            Ok(false) => {}
            Ok(true) => {
                if let Err(source) = sync_dir(&self.dir) {
                    return Err(poison(&mut self.poisoned, self.dir.clone(), source));
                }
            }
            Err(source) => {
                let path = self.tombstones.path().to_owned();
                return Err(poison(&mut self.poisoned, path, source));
            }
        }
        self.completed.insert(key.to_owned());
        if let Some(entry) = self.live.remove(key)
            && entry.writer.is_some()
        {
            self.open_writers -= 1;
        }
        let path = data_path(&self.dir, key);
        let removed = match remove_if_exists(&path) {
            Ok(removed) => removed,
            Err(source) => return Err(poison(&mut self.poisoned, path, source)),
        };
        if removed && let Err(source) = sync_dir(&self.dir) {
            return Err(poison(&mut self.poisoned, self.dir.clone(), source));
        }
        Ok(())
    }

    /// The state of a live key (not completed, at least one row attempted).
    pub fn state(&self, key: &str) -> Option<&S> {
        self.live.get(key).map(|e| &e.state)
    }

    /// Live keys whose state is ready, sorted. After `open` these are keys
    /// that were complete before a crash and must be finalized again.
    pub fn ready_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .live
            .iter()
            .filter(|(_, e)| e.state.is_ready())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Live keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.live.keys().cloned().collect();
        keys.sort_unstable();
        keys
    }

    /// True when `key` was completed (a tombstone exists).
    pub fn is_completed(&self, key: &str) -> bool {
        self.completed.contains(key)
    }

    /// Duplicates dropped for a live key since `open`, plus repeated rows
    /// skipped in its file at rebuild. 0 for unknown or completed keys.
    pub fn duplicates(&self, key: &str) -> u64 {
        self.live.get(key).map_or(0, |e| e.duplicates)
    }

    /// Rows applied for a live key (rebuilt plus processed since).
    pub fn rows(&self, key: &str) -> u64 {
        self.live.get(key).map_or(0, |e| e.rows)
    }

    /// Rows appended since the last commit.
    pub fn uncommitted_rows(&self) -> usize {
        self.uncommitted_rows
    }

    /// True after a failed durable write: every mutating call now fails.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many key files may stay open for appending; beyond it, files
    /// with nothing uncommitted are closed (and reopened when needed).
    pub fn set_max_open_files(&mut self, max: usize) {
        self.max_open_writers = max.max(1);
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Closes the writers of keys with nothing uncommitted (already flushed
    /// and synced, so closing loses nothing).
    fn close_clean_writers(&mut self) {
        for entry in self.live.values_mut() {
            if !entry.dirty && entry.writer.take().is_some() {
                self.open_writers -= 1;
            }
        }
    }

    /// Drops the manager as a crash would: buffered, uncommitted rows never
    /// reach the file.
    #[cfg(test)]
    pub(crate) fn crash(mut self) {
        for entry in self.live.values_mut() {
            if let Some(w) = entry.writer.take() {
                let _ = w.into_parts();
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn open_writers(&self) -> usize {
        self.open_writers
    }

    /// Swaps a key's file for `file` (e.g. /dev/full) to inject I/O errors.
    #[cfg(test)]
    pub(crate) fn replace_writer(&mut self, key: &str, file: File) {
        if let Some(entry) = self.live.get_mut(key) {
            if entry.writer.is_none() {
                self.open_writers += 1;
            }
            entry.writer = Some(BufWriter::new(file));
        }
    }
}

/// The keys that have a file in `dir`, sorted, after removing the temp
/// files of interrupted rewrites; says whether it removed any.
fn list_keys(dir: &Path) -> Result<(Vec<String>, bool)> {
    let mut keys = Vec::new();
    let mut removed = false;
    for dirent in fs::read_dir(dir).map_err(Error::io(dir))? {
        let dirent = dirent.map_err(Error::io(dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if key_of(name, TMP_SUFFIX).is_some() {
            // An interrupted rewrite: the original is still in place.
            remove_rebuild_leftover(dirent.path())?;
            removed = true;
        } else if let Some(key) = key_of(name, DATA_SUFFIX) {
            keys.push(key.to_owned());
        }
    }
    keys.sort_unstable();
    Ok((keys, removed))
}

/// Deletes a file the rebuild found left over by a crash.
fn remove_rebuild_leftover(path: PathBuf) -> Result<()> {
    remove_if_exists(&path).map_err(|source| Error::WriteFailed { path, source })?;
    Ok(())
}

/// Records why the manager is unusable and returns the error to report.
fn poison(poisoned: &mut Option<String>, path: PathBuf, source: std::io::Error) -> Error {
    tracing::error!(path = %path.display(), error = %source, "durable write failed: state manager poisoned");
    *poisoned = Some(format!("{}: {source}", path.display()));
    Error::WriteFailed { path, source }
}

/// Most threads one commit uses to fsync files side by side.
const SYNC_THREADS: usize = 32;

/// `sync_data` on every file, several at a time. On failure, returns the
/// index of a file that failed. Every file is attempted even after a
/// failure (none is retried).
fn sync_all_data(files: &[(&String, &File)]) -> std::result::Result<(), (usize, std::io::Error)> {
    let sync_run = |offset: usize, run: &[(&String, &File)]| {
        let mut first_err = None;
        for (j, (_, f)) in run.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                first_err.get_or_insert((offset + j, e));
            }
        }
        first_err.map_or(Ok(()), Err)
    };
    if files.len() <= 1 {
        return sync_run(0, files);
    }
    let per_thread = files.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|scope| {
        let mut results = Vec::new();
        let mut handles = Vec::new();
        for (c, run) in files.chunks(per_thread).enumerate() {
            let offset = c * per_thread;
            match std::thread::Builder::new()
                .name("sw-fsync".into())
                .spawn_scoped(scope, move || sync_run(offset, run))
            {
                Ok(h) => handles.push(h),
                // No thread to be had: do this run here.
                Err(_) => results.push(sync_run(offset, run)),
            }
        }
        for h in handles {
            results.push(
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        results
            .into_iter()
            .collect::<std::result::Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

/// Opens a key file for appending; says whether it was created.
fn open_append(path: &Path) -> std::io::Result<(File, bool)> {
    match OpenOptions::new().append(true).create_new(true).open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((OpenOptions::new().append(true).open(path)?, false))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
