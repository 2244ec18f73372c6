-- Statement bodies are rewritten with every version: lz4 compresses them at a
-- fraction of pglz's CPU (found by `tally bench`: the body UPDATE was the
-- busiest statement in PostgreSQL).
ALTER TABLE statements ALTER COLUMN body SET COMPRESSION lz4;
