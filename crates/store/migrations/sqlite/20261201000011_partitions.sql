-- The aggregator's partitions, as on Postgres (see its migration).
CREATE TABLE partitions (
    partition           INTEGER PRIMARY KEY CHECK (partition >= 0),
    epoch               INTEGER NOT NULL DEFAULT 0,
    owner               TEXT,
    owned_since         REAL,
    release_cause       TEXT,
    handovers           INTEGER NOT NULL DEFAULT 0,
    last_handover_at    REAL,
    last_handover_cause TEXT
);

CREATE TABLE aggregator_replicas (
    replica    TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    last_seen  REAL NOT NULL
);

ALTER TABLE batches ADD COLUMN partition INTEGER;
CREATE INDEX batches_partition ON batches (partition);

ALTER TABLE batch_results ADD COLUMN reannounced_at REAL;
