-- Retention (src/purge.rs): the record a purged batch leaves. Its run rows,
-- chunks, aggregate and verdict are deleted with it; SQLite keeps run rows
-- in one table (the Postgres store gives each batch a partition).
CREATE TABLE purged_batches (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL,
    runs            INTEGER NOT NULL,
    chunks          INTEGER NOT NULL,
    success         INTEGER,
    created_at      REAL NOT NULL,
    purged_at       REAL NOT NULL,
    runs_dropped_at REAL
);

CREATE INDEX verdicts_created_at ON verdicts (created_at);
