-- Fair share (docs/architecture.md, "Fair share"; crate::share): a batch's
-- tenant and weight, and the virtual clocks the dispatcher serves by,
-- charged in measured executor seconds. As migrations/postgres.

ALTER TABLE batches ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE batches ADD COLUMN weight REAL NOT NULL DEFAULT 1;
ALTER TABLE batches ADD COLUMN vtime REAL NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN used_s REAL NOT NULL DEFAULT 0;

ALTER TABLE chunks ADD COLUMN charged_s REAL;
ALTER TABLE chunks ADD COLUMN cost_s REAL;

CREATE TABLE tenants (
    name  TEXT PRIMARY KEY,
    vtime REAL NOT NULL DEFAULT 0,
    vnow  REAL NOT NULL DEFAULT 0
);

CREATE TABLE scheduler (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    vnow REAL NOT NULL DEFAULT 0
);
INSERT INTO scheduler (id) VALUES (1);

CREATE TABLE workload_rates (
    workload    TEXT PRIMARY KEY,
    sec_per_run REAL NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE executors (
    worker  TEXT PRIMARY KEY,
    threads INTEGER NOT NULL,
    seen_at REAL NOT NULL
);

CREATE INDEX chunks_undispatched ON chunks (batch_id, chunk)
    WHERE status = 'pending' AND NOT published;
