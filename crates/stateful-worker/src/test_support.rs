//! A small state for the crate's tests: it records the tag of every row
//! applied, in order, so a test can see exactly what was folded and how
//! often.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::KeyedState;
use crate::format::encode_row;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Row {
    pub tag: u32,
    pub text: String,
}

pub(crate) fn row(tag: u32) -> Row {
    Row {
        tag,
        text: format!("v{tag}, \"quoted\", ünï"),
    }
}

/// Tags applied, in order; ready at three rows.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Tags {
    pub applied: Vec<u32>,
}

impl KeyedState for Tags {
    type Row = Row;
    fn apply(&mut self, row: &Row) {
        self.applied.push(row.tag);
    }
    fn is_ready(&self) -> bool {
        self.applied.len() >= 3
    }
}

pub(crate) type Manager = crate::StatefulWorkerManager<Tags>;

/// One encoded line, as the manager would write it.
pub(crate) fn line(msg_id: &str, tag: u32) -> Vec<u8> {
    let mut out = Vec::new();
    encode_row(&mut out, msg_id, &row(tag)).unwrap();
    out
}

pub(crate) fn append_raw(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

pub(crate) fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub(crate) fn applied(mgr: &Manager, key: &str) -> Vec<u32> {
    mgr.state(key)
        .map(|s| s.applied.clone())
        .unwrap_or_default()
}
