-- Rating no longer writes `processed_events` (issue 19): `counted_events`,
-- keyed by (provider, event id), is the dedupe set, and the ids left here
-- (recorded by earlier versions) are only read until their partitions are
-- dropped. A rating instance of an older build still running (a rolling
-- upgrade, a rollback) would look ids up here only, and count again an
-- event a newer instance counted. Its insert is refused with a schema
-- error (SQLSTATE 0A000), which rating of every version treats as
-- systemic: its batch waits, nothing is dead-lettered, until it is
-- stopped and its partitions go to the newer instances.
CREATE FUNCTION processed_events_read_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'processed_events is no longer written: rating counts by counted_events; stop rating instances of older builds'
        USING ERRCODE = 'feature_not_supported';
END
$$;
CREATE TRIGGER processed_events_read_only BEFORE INSERT ON processed_events
    FOR EACH STATEMENT EXECUTE FUNCTION processed_events_read_only();
