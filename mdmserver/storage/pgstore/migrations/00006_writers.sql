-- Several servers write one database. Each change names the store that wrote it, so a server
-- applies what the others wrote and skips its own. The lease epoch fenced the writes of a single
-- primary; with every server writing, each unit of work checks its own rules under the writer
-- lock instead, and the epoch goes.

-- +goose Up
ALTER TABLE hale_changes ADD COLUMN origin TEXT NOT NULL DEFAULT '';
DROP TABLE hale_lease;

-- +goose Down
CREATE TABLE hale_lease (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    epoch BIGINT  NOT NULL
);
INSERT INTO hale_lease (epoch) VALUES (0);
ALTER TABLE hale_changes DROP COLUMN origin;
