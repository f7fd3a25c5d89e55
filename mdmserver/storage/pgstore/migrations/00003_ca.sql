-- The certificate authority's database (smallstep/nosql's interface: tables of keys and values:
-- issued and revoked certificates, the CRL). A table exists once created, empty or not.

-- +goose Up
CREATE TABLE hale_ca_tables (
    name TEXT PRIMARY KEY
);

CREATE TABLE hale_ca (
    tbl   TEXT  NOT NULL REFERENCES hale_ca_tables (name) ON DELETE CASCADE,
    key   BYTEA NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (tbl, key)
);

-- +goose Down
DROP TABLE hale_ca;
DROP TABLE hale_ca_tables;
