-- chunks.holder: the claim holder lock of the process that claimed the
-- chunk (src/postgres/holder.rs). A claim that finds the chunk running
-- under a live lease takes it at once when that lock is free — the
-- holder's process is gone — instead of waiting for the lease to run out.
-- NULL for claims made before this migration and by processes that do not
-- hold claims (they wait for the lease, as before).
ALTER TABLE chunks ADD COLUMN holder int4;
