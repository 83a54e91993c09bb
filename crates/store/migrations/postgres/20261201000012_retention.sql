-- Retention (docs/operations.md, "Retention"; src/postgres/purge.rs).
--
-- Per-run rows are most of the database (~100 bytes a run), and a batch's
-- rows are written together, read together and deleted together. So
-- `run_results` becomes a table partitioned by batch, one partition per
-- batch, created with the batch: purging a batch detaches and drops its
-- partition — no scan of the other batches' rows, no dead tuples left for
-- vacuum, and the space goes back to the file system at once. A scan of
-- one batch reads only its partition, so the BRIN index that kept the
-- verifier off other batches' blocks is no longer needed.
--
-- A purged batch leaves one row in `purged_batches`: enough for a stage
-- that meets a very late message of it to drop the message instead of
-- dead-lettering it, and for `status` to say what became of it.

CREATE TABLE purged_batches (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    runs       bigint NOT NULL,
    chunks     int NOT NULL,
    -- The verdict's, NULL when purged without one (`purge --force`).
    success    bool,
    created_at timestamptz NOT NULL,
    purged_at  timestamptz NOT NULL DEFAULT now(),
    -- When the batch's run-row partition was dropped: a purge that died
    -- between its commit and the drop leaves NULL, and the next purge or
    -- sweep finishes it.
    runs_dropped_at timestamptz
);

CREATE INDEX purged_batches_pending_drop ON purged_batches (purged_at)
    WHERE runs_dropped_at IS NULL;

-- Finished batches by when they finished, for `purge --older-than` and
-- RETENTION_DAYS.
CREATE INDEX verdicts_created_at ON verdicts (created_at);

-- The name of a batch's run-row partition: one definition, used here and
-- by the store (create, purge).
CREATE FUNCTION run_results_partition(batch uuid) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN 'run_results_' || replace(batch::text, '-', '');

-- Creates the batch's partition, empty. Created standalone and attached,
-- rather than `CREATE TABLE … PARTITION OF`: attaching takes only a SHARE
-- UPDATE EXCLUSIVE lock on `run_results`, so executors writing and the
-- verifier reading other batches' rows are never blocked; the constraint
-- check on attach scans an empty table. There is no default partition,
-- whose scan every attach would need.
CREATE FUNCTION run_results_add_partition(batch uuid) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    part text := run_results_partition(batch);
BEGIN
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I (LIKE run_results)', part);
    IF NOT EXISTS (SELECT 1 FROM pg_inherits
                   WHERE inhrelid = to_regclass(quote_ident(part))) THEN
        EXECUTE format('ALTER TABLE run_results ATTACH PARTITION %I FOR VALUES IN (%L)',
                       part, batch);
    END IF;
END
$$;

DROP VIEW run_outcomes;
ALTER TABLE run_results RENAME TO run_results_unpartitioned;
ALTER INDEX run_results_batch RENAME TO run_results_unpartitioned_batch;

CREATE TABLE run_results (
    batch_id  uuid NOT NULL,
    run_index bigint NOT NULL,
    outcome   bytea NOT NULL
) PARTITION BY LIST (batch_id);

-- Existing batches get their partitions and their rows, in one pass over
-- the old table; rows of batches deleted by hand (they had no foreign
-- key) are left behind with it.
SELECT run_results_add_partition(id) FROM batches;
INSERT INTO run_results
    SELECT r.* FROM run_results_unpartitioned AS r
    WHERE EXISTS (SELECT 1 FROM batches AS b WHERE b.id = r.batch_id);
DROP TABLE run_results_unpartitioned;

CREATE VIEW run_outcomes AS
    SELECT batch_id, run_index, run_outcome_values(outcome) AS outcome
    FROM run_results;
