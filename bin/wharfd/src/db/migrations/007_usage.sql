-- Bytes in each user's files, changed in the same transaction as the files are (install, replace,
-- remove, rename over a file): an upload's quota check reads one row instead of summing every file
-- the user has, which it did inside the user's quota lock.
CREATE TABLE usage (
    user_name text   PRIMARY KEY,
    files     bigint NOT NULL DEFAULT 0
);
INSERT INTO usage (user_name, files)
    SELECT user_name, sum(size) FROM entries WHERE NOT is_dir GROUP BY user_name;
