-- A batch that meets a sealed statement lost a race with a seal: it is
-- retried at once and then sees the seal. Its own SQLSTATE (TY001, not the
-- generic 23000) lets rating tell this refusal from any other. A partial
-- index serves the questions about open statements.
CREATE OR REPLACE FUNCTION tally_refuse_sealed_statement_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.account_id, NEW.period_start, NEW.period_end, NEW.version, NEW.body, NEW.sealed)
       IS DISTINCT FROM
       (OLD.account_id, OLD.period_start, OLD.period_end, OLD.version, OLD.body, OLD.sealed) THEN
        RAISE EXCEPTION 'statement of % from % is sealed', OLD.account_id, OLD.period_start
            USING ERRCODE = 'TY001';
    END IF;
    RETURN NEW;
END $$;

CREATE INDEX statements_open_idx ON statements (account_id, period_start) WHERE NOT sealed;
