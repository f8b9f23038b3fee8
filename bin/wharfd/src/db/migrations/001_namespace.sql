-- The namespace of the s3 backend: every user's files and directories, the uploads in progress and
-- the pieces each has stored, and the blobs waiting to be deleted. File content lives in the object
-- store under blobs/BLOB/PIECE, keys that are never reused; a file becomes visible only when its row
-- here points at its blob.

CREATE TABLE entries (
    user_name  text    NOT NULL,
    -- Normalised remote path ("/a/b"); the root "/" has no row.
    path       text    NOT NULL,
    parent     text    NOT NULL,
    is_dir     boolean NOT NULL,
    size       bigint  NOT NULL DEFAULT 0,
    mode       integer NOT NULL,
    mtime      bigint  NOT NULL,
    -- Files: where the pieces are, how large each is, and the verified digest.
    blob       text,
    piece_size bigint,
    sha256     text,
    -- Changes whenever the content does (a download resumes only on the same version).
    version    bigint  NOT NULL,
    PRIMARY KEY (user_name, path)
);
CREATE INDEX entries_by_parent ON entries (user_name, parent);
CREATE SEQUENCE content_versions;

CREATE TABLE uploads (
    user_name  text        NOT NULL,
    -- The partial-upload key: a digest of the path.
    key        text        NOT NULL,
    path       text        NOT NULL,
    size       bigint      NOT NULL,
    source     text        NOT NULL,
    blob       text        NOT NULL,
    piece_size bigint      NOT NULL,
    updated    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_name, key)
);

-- A piece counts as received only once its row is here, after the store took its bytes.
CREATE TABLE upload_pieces (
    user_name text   NOT NULL,
    key       text   NOT NULL,
    idx       bigint NOT NULL,
    len       bigint NOT NULL,
    PRIMARY KEY (user_name, key, idx),
    FOREIGN KEY (user_name, key) REFERENCES uploads ON DELETE CASCADE
);

-- Blobs no row references any more, deleted from the store by whichever node sweeps first.
CREATE TABLE blob_gc (
    blob   text   PRIMARY KEY,
    pieces bigint NOT NULL
);
