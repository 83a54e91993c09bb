-- The aggregator's partitions (src/partition.rs, docs/architecture.md).
--
-- A batch's chunk results go to one of a fixed number of partitions (a
-- stable hash of the batch id); each partition has one owner at a time,
-- fenced by its epoch: an aggregator replica takes a new epoch when it
-- becomes active for the partition, and its effects outside its own disk
-- (saving an aggregate) count only while the epoch is still its own.
-- The number of rows is the partition count, fixed when the database is
-- first migrated; changing it is a migration of its own
-- (docs/operations.md).
CREATE TABLE partitions (
    partition           int2 PRIMARY KEY CHECK (partition >= 0),
    epoch               bigint NOT NULL DEFAULT 0,
    owner               text,
    owned_since         timestamptz,
    -- Why the owner let go, when it did (read by the next owner).
    release_cause       text,
    handovers           bigint NOT NULL DEFAULT 0,
    last_handover_at    timestamptz,
    last_handover_cause text
);

-- Aggregator replicas announce themselves here, so each knows how many
-- there are and what a fair share of the partitions is.
CREATE TABLE aggregator_replicas (
    replica    text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now()
);

-- Each batch's partition. NULL for batches created before this migration:
-- the binary fills them in when it migrates (the hash lives in Rust).
ALTER TABLE batches ADD COLUMN partition int2;
CREATE INDEX batches_partition ON batches (partition);

-- When the sweeper last sent an aggregated batch to the verifier again
-- (its first verify message was lost): at most once per deadline.
ALTER TABLE batch_results ADD COLUMN reannounced_at timestamptz;
