-- Quota across nodes: an upload reserves the space it will take once whole (its size less the
-- file it replaces) for as long as its lease runs; the lease is renewed as its pieces arrive, so
-- the reservations of a node that died lapse by themselves.
ALTER TABLE uploads
    ADD COLUMN reserved    bigint      NOT NULL DEFAULT 0,
    ADD COLUMN lease_until timestamptz NOT NULL DEFAULT now();
