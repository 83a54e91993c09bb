-- Cancel (docs/architecture.md, "Cancel"): a batch cancelled by a person
-- keeps the time and reason; its chunks that had not completed become
-- `cancelled`, a final status no claim takes and no completion writes.

ALTER TABLE batches
    ADD COLUMN cancelled_at  timestamptz,
    ADD COLUMN cancel_reason text;

ALTER TABLE chunks DROP CONSTRAINT chunks_status_check;
ALTER TABLE chunks ADD CONSTRAINT chunks_status_check
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled'));

-- The aggregator's look for cancelled batches of a partition still to seal.
CREATE INDEX batches_cancelled ON batches (partition) WHERE cancelled_at IS NOT NULL;
