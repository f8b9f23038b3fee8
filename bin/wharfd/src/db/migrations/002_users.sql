-- User records, shared by the nodes: the same TOML text `var/users/NAME.toml` holds on a node
-- without a database (Argon2id PHC string, quota, public keys).
CREATE TABLE users (
    name   text PRIMARY KEY,
    record text NOT NULL
);
