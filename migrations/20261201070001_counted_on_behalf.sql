-- The consumer reference (issue 17's `onbehalfof`) of each counted event,
-- kept with its values so a correction (cancel, amend, backfill) takes the
-- event's part out of `usage_on_behalf` and an amendment keeps it; '' for
-- usage done on behalf of no consumer. Events counted before this column
-- read as ''.
ALTER TABLE counted_events ADD COLUMN on_behalf_of TEXT NOT NULL DEFAULT '';
