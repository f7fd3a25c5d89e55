-- The change feed: every committed write to a bucket a replica keeps in memory (device records,
-- postures, verdicts, policies, tokens, ...) adds the bucket and key here, in the transaction that
-- makes it, and notifies channel hale_changes. Writers commit one at a time (the writer lock), so
-- seq order is commit order; each replica applies the rows after the last seq it applied.

-- +goose Up
CREATE TABLE hale_changes (
    seq    BIGSERIAL   PRIMARY KEY,
    bucket TEXT        NOT NULL,
    key    BYTEA       NOT NULL,
    at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Rows older than the retention are pruned; a replica that was away longer reloads everything.
-- pruned_through is the highest seq pruned.
CREATE TABLE hale_changes_pruned (
    one            BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    pruned_through BIGINT  NOT NULL
);
INSERT INTO hale_changes_pruned (pruned_through) VALUES (0);

-- +goose Down
DROP TABLE hale_changes_pruned;
DROP TABLE hale_changes;
