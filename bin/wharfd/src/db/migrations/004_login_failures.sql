-- Failed logins, shared by the nodes, so that a guesser cannot spread attempts across them: by
-- source address (IPv6 per /64) and by user name, each with its count and the time of the last.
CREATE TABLE login_failures (
    kind  text        NOT NULL CHECK (kind IN ('ip', 'user')),
    key   text        NOT NULL,
    count integer     NOT NULL,
    last  timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
