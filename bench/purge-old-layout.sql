-- The old run_results layout (one table, a BRIN index) under the same load as
-- `make bench`'s purge section: 20 batches of 500,000 rows of 7 values, then
-- one batch deleted. bench/README.md, "Retention". Run with:
--   psql -d test -q -f bench/purge-old-layout.sql
\timing on
DROP SCHEMA IF EXISTS oldlayout CASCADE; CREATE SCHEMA oldlayout; SET search_path = oldlayout;
CREATE TABLE run_results (batch_id uuid NOT NULL, run_index bigint NOT NULL, outcome bytea NOT NULL);
CREATE INDEX run_results_batch ON run_results USING brin (batch_id uuid_minmax_multi_ops, run_index) WITH (autosummarize = on);
CREATE TABLE ids AS SELECT gen_random_uuid() AS id, n FROM generate_series(1, 20) n;
INSERT INTO run_results SELECT i.id, g, decode(repeat('00010203', 7), 'hex') FROM ids i, generate_series(0, 499999) g ORDER BY i.n, g;
SELECT brin_summarize_new_values('run_results_batch');
ANALYZE run_results;
SELECT pg_size_pretty(pg_total_relation_size('run_results')) AS before, pg_total_relation_size('run_results') AS before_bytes;
DELETE FROM run_results WHERE batch_id = (SELECT id FROM ids WHERE n = 10);
SELECT pg_size_pretty(pg_total_relation_size('run_results')) AS after_delete, pg_total_relation_size('run_results') AS after_delete_bytes;
VACUUM run_results;
SELECT pg_size_pretty(pg_total_relation_size('run_results')) AS after_vacuum, pg_total_relation_size('run_results') AS after_vacuum_bytes;
DROP SCHEMA oldlayout CASCADE;
