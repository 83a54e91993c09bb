-- run_results: a BRIN index instead of the primary key.
--
-- The primary key's b-tree was about a third of the server's work per COPY
-- (500,000 rows: 1.18-1.35 s with it, 0.80-0.88 s with this index), and two
-- executors committing at once contend for its rightmost leaf page. The
-- rows of a batch are written once, close together in the heap, and read
-- once by the verifier, which a block-range index serves as well.
--
-- Exactly-once does not rest on the key: a chunk's rows are inserted only
-- in the transaction that moves that chunk from `running` (under the
-- committing attempt) to `completed` — one row lock, one transition — and
-- only for exactly that chunk's run range. The verifier checks every run
-- index of a batch is present once (a bitset over the scan) and reports a
-- repeat as a FAILURE, so a duplicate row could not pass unseen either.
--
-- minmax-multi keeps each block range's batch ids as distinct values (up to
-- 32), so interleaved batches and random (v4) ids stay selective.
-- autosummarize asks autovacuum to summarize each range once it is full;
-- ranges not yet summarized are always read (and rechecked), which is
-- correct, and costs one pass over the newest rows at most.
ALTER TABLE run_results DROP CONSTRAINT run_results_pkey;

CREATE INDEX run_results_batch ON run_results
    USING brin (batch_id uuid_minmax_multi_ops, run_index)
    WITH (autosummarize = on);
