-- The web console's event library: saved bingo events, and the view the
-- console lists batches from.
--
-- An event is stored as the exact workload snapshot a batch run from it
-- stores (`{"kind":"bingo","event":{...}}`, compact JSON as `submit` writes
-- it), so the event a batch ran is found by equality with the batch's own
-- snapshot: no link row is written by the submit path, a batch submitted
-- from the command line with the same event file is linked too, and a
-- crash between submitting and linking cannot lose the link.
--
-- Events never change once saved (a trigger refuses every UPDATE), and an
-- event a batch ran cannot be deleted (another trigger): the link by
-- content stays true forever, and each batch keeps its own snapshot anyway.

CREATE TABLE events (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    workload   text NOT NULL,
    teams      int NOT NULL CHECK (teams >= 0),
    rows       int NOT NULL CHECK (rows >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per distinct event: saving the same event twice finds the first.
-- (A b-tree cannot hold whole events, which run to tens of kilobytes.)
CREATE UNIQUE INDEX events_workload_md5 ON events (md5(workload));
CREATE INDEX events_created_at ON events (created_at DESC);

CREATE FUNCTION events_immutable() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'event % is immutable: save a new event instead', OLD.id
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;

CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION events_immutable();

CREATE FUNCTION events_keep_used() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM batches AS b WHERE b.workload = OLD.workload) THEN
        RAISE EXCEPTION 'event % was run by a batch and cannot be deleted', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER events_no_delete_used BEFORE DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_keep_used();
