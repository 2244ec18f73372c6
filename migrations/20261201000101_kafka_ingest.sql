-- Whether a provider may produce usage straight to the `usage.ingest` topic
-- (in production its topic ACL decides who can write; this setting decides
-- whose records the collector accepts from there). Off unless an admin
-- turns it on.
ALTER TABLE providers
    ADD COLUMN kafka_ingest BOOLEAN NOT NULL DEFAULT false;
