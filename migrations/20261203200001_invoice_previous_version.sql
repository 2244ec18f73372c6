-- The statement version a draft held before its latest update (NULL when
-- that write inserted it), set by invoicing's upsert from the row it locked
-- (`previous_statement_version = invoices.statement_version`) and returned
-- by it. Invoicing plans a draft's new lines from the layout it remembers
-- writing for that version (services/invoicing/src/layouts.rs), with no
-- query of its own to read the version first.
ALTER TABLE invoices ADD COLUMN previous_statement_version BIGINT;
