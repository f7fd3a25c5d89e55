-- The server lease's epoch: each time a server takes the lease it moves the epoch on, and every
-- write it makes checks the epoch is still its own (Store.FenceWrites), so a server that lost
-- the lease without noticing yet cannot write beside the one that took it.

-- +goose Up
CREATE TABLE hale_lease (
    one   BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    epoch BIGINT  NOT NULL
);
INSERT INTO hale_lease (epoch) VALUES (0);

-- +goose Down
DROP TABLE hale_lease;
