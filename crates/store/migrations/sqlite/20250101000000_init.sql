-- batchline results store, embedded SQLite schema (zero-setup mode).
-- Same model as the Postgres schema; timestamps are Unix-epoch REAL seconds,
-- ids are 16-byte BLOBs, a run's outcome is a BLOB of little-endian i32s.

CREATE TABLE batches (
    id                BLOB PRIMARY KEY,
    name              TEXT NOT NULL,
    workload          TEXT NOT NULL,
    seed              INTEGER NOT NULL,
    runs              INTEGER NOT NULL CHECK (runs >= 0),
    chunk_size        INTEGER NOT NULL CHECK (chunk_size > 0),
    chunks            INTEGER NOT NULL CHECK (chunks >= 0),
    created_at        REAL NOT NULL,
    republish_round   INTEGER NOT NULL DEFAULT 0,
    last_republish_at REAL
);

CREATE INDEX batches_created_at ON batches (created_at DESC);

CREATE TABLE chunks (
    batch_id     BLOB NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    chunk        INTEGER NOT NULL CHECK (chunk >= 0),
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    published    INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  REAL,
    worker       TEXT,
    last_error   TEXT,
    result       TEXT,
    updated_at   REAL NOT NULL,
    completed_at REAL,
    swept_at     REAL,
    PRIMARY KEY (batch_id, chunk),
    CHECK (status <> 'completed' OR result IS NOT NULL)
) WITHOUT ROWID;

CREATE INDEX chunks_live ON chunks (status, lease_until, updated_at)
    WHERE status IN ('pending', 'running');

CREATE INDEX chunks_failed ON chunks (batch_id, chunk) WHERE status = 'failed';

-- No foreign key: rows are only inserted by the transaction that completes
-- their chunk; the primary key rejects a duplicate run.
CREATE TABLE run_results (
    batch_id  BLOB NOT NULL,
    run_index INTEGER NOT NULL,
    outcome   BLOB NOT NULL,
    PRIMARY KEY (batch_id, run_index)
) WITHOUT ROWID;

CREATE TABLE batch_results (
    batch_id           BLOB PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    result             TEXT NOT NULL,
    duplicates_dropped INTEGER NOT NULL,
    created_at         REAL NOT NULL
);

CREATE TABLE verdicts (
    batch_id   BLOB PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    success    INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    line       TEXT NOT NULL,
    printed    INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
