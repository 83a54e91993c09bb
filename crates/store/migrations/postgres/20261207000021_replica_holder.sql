-- The claim holder lock (holder.rs) of the process behind each aggregator
-- replica: while it is held the replica's process lives; once its session
-- ends (with the process) the replica counts as gone at once, not after a
-- silence. NULL for replicas that announce no holder (they are judged by
-- their silence alone).
ALTER TABLE aggregator_replicas ADD COLUMN holder int4;
