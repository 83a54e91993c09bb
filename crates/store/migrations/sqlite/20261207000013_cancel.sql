-- Cancel (docs/architecture.md, "Cancel"): a batch cancelled by a person
-- keeps the time and reason; its chunks that had not completed become
-- `cancelled`. SQLite cannot change a CHECK constraint in place, so the
-- chunks table is rebuilt with the new status allowed (nothing references
-- it).

ALTER TABLE batches ADD COLUMN cancelled_at REAL;
ALTER TABLE batches ADD COLUMN cancel_reason TEXT;

CREATE TABLE chunks_new (
    batch_id     BLOB NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    chunk        INTEGER NOT NULL CHECK (chunk >= 0),
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
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

INSERT INTO chunks_new SELECT batch_id, chunk, status, published, attempts, lease_until,
    worker, last_error, result, updated_at, completed_at, swept_at FROM chunks;
DROP TABLE chunks;
ALTER TABLE chunks_new RENAME TO chunks;

CREATE INDEX chunks_live ON chunks (status, lease_until, updated_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX chunks_failed ON chunks (batch_id, chunk) WHERE status = 'failed';
