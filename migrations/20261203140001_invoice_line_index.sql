-- A draft's line index: the position and digest of each of its lines, in
-- order (36 bytes a line: the position as a big-endian INT, then the
-- line's SHA-256), written with the lines in the same transaction. A new
-- statement version is compared with it instead of reading every line's
-- digest (that read led PostgreSQL's time at 400 lines a statement).
-- NULL when not known (lines written before this column, a finalized
-- invoice, whose lines are numbered again): invoicing then reads the
-- lines' digests.
ALTER TABLE invoices ADD COLUMN line_index BYTEA;
