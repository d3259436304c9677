-- The usage log's three time indexes in ascending order. Rows arrive in
-- time order, so each new entry of an ascending index goes to the right
-- edge of its B-tree, where a full page splits cheaply and stays packed;
-- in a descending index every entry went to the left edge, where each
-- split halves a page and leaves both halves half empty. Queries read
-- either order (newest first is a backward scan). Measured: inserts cost
-- about a fifth less in the database, and the three indexes take about
-- 45 % less space.
--
-- The new indexes are built before the old ones go, so that reads wait
-- only for the last statements (DROP INDEX locks the table until the
-- commit); usage writes wait for the whole build.
CREATE INDEX usage_log_timestamp_asc_idx ON usage_log (timestamp);
CREATE INDEX usage_log_key_timestamp_asc_idx ON usage_log (key_id, timestamp);
CREATE INDEX usage_log_project_timestamp_asc_idx ON usage_log (project, timestamp);
DROP INDEX usage_log_timestamp_idx;
DROP INDEX usage_log_key_timestamp_idx;
DROP INDEX usage_log_project_timestamp_idx;
ALTER INDEX usage_log_timestamp_asc_idx RENAME TO usage_log_timestamp_idx;
ALTER INDEX usage_log_key_timestamp_asc_idx RENAME TO usage_log_key_timestamp_idx;
ALTER INDEX usage_log_project_timestamp_asc_idx RENAME TO usage_log_project_timestamp_idx;
