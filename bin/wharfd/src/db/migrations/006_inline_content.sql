-- Small files keep their content in their row instead of the object store: a file no larger than
-- the backend's inline limit has no blob (blob is NULL) and its bytes in entries.content; while it
-- is uploaded, its one piece's bytes are in upload_pieces.content, and its upload has no blob.
ALTER TABLE entries ADD COLUMN content bytea;
ALTER TABLE upload_pieces ADD COLUMN content bytea;
ALTER TABLE uploads ALTER COLUMN blob DROP NOT NULL;
