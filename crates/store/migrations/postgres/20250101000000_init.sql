-- batchline results store, Postgres schema.
-- State only moves forward: pending -> running -> completed | failed
-- (running -> pending on a retried error). Claims are fenced by `attempts`.

CREATE TABLE batches (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    workload          text NOT NULL,          -- JSON snapshot every stage uses
    seed              bigint NOT NULL,
    runs              bigint NOT NULL CHECK (runs >= 0),
    chunk_size        int NOT NULL CHECK (chunk_size > 0),
    chunks            int NOT NULL CHECK (chunks >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    republish_round   int NOT NULL DEFAULT 0,
    last_republish_at timestamptz
);

-- `status` lists the newest batches.
CREATE INDEX batches_created_at ON batches (created_at DESC);

CREATE TABLE chunks (
    batch_id     uuid NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    chunk        int NOT NULL CHECK (chunk >= 0),
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    published    bool NOT NULL DEFAULT false,
    attempts     int NOT NULL DEFAULT 0,
    lease_until  timestamptz,
    worker       text,
    last_error   text,
    result       text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    swept_at     timestamptz,
    PRIMARY KEY (batch_id, chunk),
    CHECK (status <> 'completed' OR result IS NOT NULL)
);

-- The sweeper looks only at live chunks; completed ones are the vast majority
-- and stay out of this index.
CREATE INDEX chunks_live ON chunks (status, lease_until, updated_at)
    WHERE status IN ('pending', 'running');

-- Failed batches without a verdict.
CREATE INDEX chunks_failed ON chunks (batch_id, chunk) WHERE status = 'failed';

-- One row per run. No foreign key on purpose: a per-row FK check would
-- dominate the COPY, and rows are only ever inserted in the transaction that
-- completes their (existing) chunk. The primary key makes a duplicate run
-- fail the commit loudly.
CREATE TABLE run_results (
    batch_id  uuid NOT NULL,
    run_index bigint NOT NULL,
    outcome   int4[] NOT NULL,
    PRIMARY KEY (batch_id, run_index)
);

CREATE TABLE batch_results (
    batch_id           uuid PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    result             text NOT NULL,
    duplicates_dropped bigint NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE verdicts (
    batch_id   uuid PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
    success    bool NOT NULL,
    reason     text NOT NULL,
    line       text NOT NULL,
    printed    bool NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
