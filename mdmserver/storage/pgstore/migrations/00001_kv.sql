-- Hale's own repositories: ordered key-value buckets (see storage/kvstore), the layout the bbolt
-- backend keeps too, so one implementation of every repository serves both. A bucket is the rows
-- that share its name; bytea keys sort bytewise, as bbolt's do.

-- +goose Up
CREATE TABLE hale_kv (
    bucket TEXT  NOT NULL,
    key    BYTEA NOT NULL,
    value  BYTEA NOT NULL,
    PRIMARY KEY (bucket, key),
    CHECK (octet_length(key) BETWEEN 1 AND 4096)
);

-- Each bucket's sequence (kvstore.Bucket.NextSequence): a row updated in the transaction that
-- takes the number, so a rollback returns it, as bbolt's does.
CREATE TABLE hale_kv_sequences (
    bucket TEXT   PRIMARY KEY,
    seq    BIGINT NOT NULL
);

-- How many records of a bucket are in each state (kvstore.Tx.MoveState), kept by the writes that
-- move them, so a metric reads counts without scanning records.
CREATE TABLE hale_kv_state_counts (
    bucket TEXT   NOT NULL,
    state  TEXT   NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (bucket, state)
);

-- +goose Down
DROP TABLE hale_kv_state_counts;
DROP TABLE hale_kv_sequences;
DROP TABLE hale_kv;
