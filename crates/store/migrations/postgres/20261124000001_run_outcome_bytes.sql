-- run_results.outcome: the run's int4 values as bytes (4 per value,
-- big-endian) instead of an int4[].
--
-- An array costs Postgres a function call per element on the way in
-- (array_recv -> int4recv) and a call plus a 1 KB buffer per element on the
-- way out (array_send -> int4send): server-side, 500,000 bingo rows (13
-- values each) took 620-690 ms to COPY in and 400-420 ms to read back as
-- int4[], 428-444 ms and 110-120 ms as bytea. That was half of Postgres'
-- CPU in an end-to-end run, and the read-back is the verifier's tail.
--
-- People reading results in SQL use the `run_outcomes` view, which shows
-- the same rows with `outcome` as int4[] again.

CREATE FUNCTION run_outcome_values(bytes bytea) RETURNS int4[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    -- int4 << does not check for overflow, so the high byte carries the sign.
    RETURN ARRAY(
        SELECT (get_byte(bytes, i) << 24) | (get_byte(bytes, i + 1) << 16)
             | (get_byte(bytes, i + 2) << 8) | get_byte(bytes, i + 3)
        FROM generate_series(0, length(bytes) - 4, 4) AS i
        ORDER BY i
    );

-- The conversion of rows written before this migration: int4send is the
-- big-endian encoding of one value.
CREATE FUNCTION run_outcome_bytes(run_values int4[]) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT
    RETURN coalesce(
        (SELECT string_agg(int4send(v), ''::bytea ORDER BY n)
         FROM unnest(run_values) WITH ORDINALITY AS u(v, n)),
        ''::bytea
    );

ALTER TABLE run_results
    ALTER COLUMN outcome TYPE bytea USING run_outcome_bytes(outcome);

DROP FUNCTION run_outcome_bytes(int4[]);

CREATE VIEW run_outcomes AS
    SELECT batch_id, run_index, run_outcome_values(outcome) AS outcome
    FROM run_results;
