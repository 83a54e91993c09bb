-- Fair share (docs/architecture.md, "Fair share"; crate::share): a batch's
-- tenant and weight, and the virtual clocks the dispatcher serves by,
-- charged in measured executor seconds.

ALTER TABLE batches
    ADD COLUMN tenant text NOT NULL DEFAULT 'default',
    ADD COLUMN weight float8 NOT NULL DEFAULT 1 CHECK (weight > 0),
    -- Served up to here: executor seconds over its weight.
    ADD COLUMN vtime  float8 NOT NULL DEFAULT 0,
    -- Executor seconds measured for its chunks.
    ADD COLUMN used_s float8 NOT NULL DEFAULT 0;

ALTER TABLE chunks
    -- The estimate its dispatch charged, until its measured cost corrects it.
    ADD COLUMN charged_s float8,
    -- Executor seconds its attempts measured.
    ADD COLUMN cost_s    float8;

-- The tenants' clocks.
CREATE TABLE tenants (
    name  text PRIMARY KEY,
    vtime float8 NOT NULL DEFAULT 0,
    vnow  float8 NOT NULL DEFAULT 0
);

-- The clock above the tenants; its one row is the lock that makes
-- dispatches one at a time.
CREATE TABLE scheduler (
    id   int PRIMARY KEY CHECK (id = 1),
    vnow float8 NOT NULL DEFAULT 0
);
INSERT INTO scheduler (id) VALUES (1);

-- Measured executor seconds per run, by workload snapshot: estimates.
CREATE TABLE workload_rates (
    workload    text PRIMARY KEY,
    sec_per_run float8 NOT NULL CHECK (sec_per_run >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Executors heard from lately, with their simulation threads: the pool's size.
CREATE TABLE executors (
    worker  text PRIMARY KEY,
    threads int NOT NULL CHECK (threads > 0),
    seen_at timestamptz NOT NULL DEFAULT now()
);

-- What waits to be dispatched, by batch.
CREATE INDEX chunks_undispatched ON chunks (batch_id, chunk)
    WHERE status = 'pending' AND NOT published;
