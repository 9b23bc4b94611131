-- Fencing and freshness for projections.
--
-- `epoch` fences the active worker: a worker that takes a projection's lock
-- increments it, and every batch it writes checks (under the row lock) that
-- the epoch is still its own. A worker that lost its lock (a PostgreSQL
-- restart drops advisory locks) and did not notice can then write nothing.
--
-- `filter_subject` is the subject filter the projection reads: readers use it
-- to tell "the projection has applied everything it reads up to N" (no message
-- matching it between the checkpoint and N) without asking its consumer.
ALTER TABLE projection_checkpoints
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN filter_subject text NOT NULL DEFAULT '';
