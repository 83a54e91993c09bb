//! The earlier system's example as a test: a per-client sum over N chunks,
//! rows `msg_id,chunk_number,value`, through a crash, redeliveries and a
//! late duplicate after cleanup.

// Test code: a failed unwrap is the test failing, in helpers too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use serde::{Deserialize, Serialize};
use stateful_worker::{KeyedState, Processed, StatefulWorkerManager, inspect};

const CHUNKS: u32 = 4;

#[derive(Debug, Serialize, Deserialize)]
struct Chunk {
    chunk_number: u32,
    value: i64,
}

#[derive(Debug, Default)]
struct ClientSum {
    chunks: u32,
    sum: i64,
}

impl KeyedState for ClientSum {
    type Row = Chunk;
    fn apply(&mut self, row: &Chunk) {
        self.chunks += 1;
        self.sum += row.value;
    }
    fn is_ready(&self) -> bool {
        self.chunks == CHUNKS
    }
}

type Manager = StatefulWorkerManager<ClientSum>;

fn chunk(client: u32, n: u32) -> (String, Chunk) {
    let value = i64::from(client * 100 + n);
    (
        format!("c{client}-chunk{n}"),
        Chunk {
            chunk_number: n,
            value,
        },
    )
}

#[test]
fn per_client_sums_survive_a_restart_and_ignore_redeliveries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = Manager::open(dir.path()).unwrap();
    // Two clients, interleaved; the first three chunks of each.
    for n in 0..3 {
        for client in [1, 2] {
            let (msg_id, row) = chunk(client, n);
            let key = format!("client-{client}");
            assert_eq!(m.process(&key, &msg_id, row).unwrap(), Processed::Applied);
        }
    }
    m.commit().unwrap();
    let text = fs::read_to_string(dir.path().join("client-1.csv")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let body = "c1-chunk0,0,100";
    assert_eq!(
        lines[0],
        format!("{body},{:08x}", crc32fast::hash(body.as_bytes()))
    );
    assert_eq!(lines.len(), 3);
    drop(m);

    let (mut m, report) = Manager::open(dir.path()).unwrap();
    assert_eq!((report.keys, report.rows), (2, 6));
    assert!(m.ready_keys().is_empty());
    // Redeliveries of everything, then the last chunks.
    for client in [1, 2] {
        for n in 0..CHUNKS {
            let (msg_id, row) = chunk(client, n);
            let expected = if n < 3 {
                Processed::Duplicate
            } else {
                Processed::Applied
            };
            let key = format!("client-{client}");
            assert_eq!(m.process(&key, &msg_id, row).unwrap(), expected);
        }
    }
    m.commit().unwrap();
    assert_eq!(m.ready_keys(), vec!["client-1", "client-2"]);
    assert_eq!(m.state("client-1").unwrap().sum, 100 + 101 + 102 + 103);
    assert_eq!(m.state("client-2").unwrap().sum, 200 + 201 + 202 + 203);
    assert_eq!(m.duplicates("client-1"), 3);

    m.complete("client-1").unwrap();
    let (msg_id, row) = chunk(1, 2);
    assert_eq!(
        m.process("client-1", &msg_id, row).unwrap(),
        Processed::AlreadyCompleted
    );
    m.commit().unwrap();
    let files: Vec<String> = inspect(dir.path())
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(files, vec!["client-2"]);
}
