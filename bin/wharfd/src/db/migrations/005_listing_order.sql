-- A directory lists page by page in path order, each page starting after the last path sent, so
-- that a node never holds a whole large directory: this index serves those pages in order.
CREATE INDEX entries_by_parent_path ON entries (user_name, parent, path);
DROP INDEX entries_by_parent;
