-- Each user's total in up to 16 rows (stripes; a change goes to one chosen at random, the total
-- is their sum). With one row, every install of a user waited for the one before it to commit,
-- its WAL flush included, since each holds the row's lock until its commit: 1,000 uploads of one
-- user made 1,000 flushes in a row instead of sharing them.
ALTER TABLE usage ADD COLUMN stripe smallint NOT NULL DEFAULT 0;
ALTER TABLE usage DROP CONSTRAINT usage_pkey;
ALTER TABLE usage ADD PRIMARY KEY (user_name, stripe);
