-- audit projection: one row per event of the log, so filtered audit queries
-- over years of history find their events without scanning the stream.
-- The log stays the truth: rows hold only what to look up, not the events.
CREATE TABLE audit_index (
    sequence       bigint NOT NULL,
    idx            integer NOT NULL,
    occurred_at    timestamptz NOT NULL,
    principal      text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    event_type     text NOT NULL,
    correlation_id text NOT NULL,
    PRIMARY KEY (sequence, idx)
);
CREATE INDEX audit_index_aggregate ON audit_index (aggregate_type, aggregate_id, sequence);
CREATE INDEX audit_index_principal ON audit_index (principal, sequence);
CREATE INDEX audit_index_event_type ON audit_index (event_type, sequence);
CREATE INDEX audit_index_correlation ON audit_index (correlation_id, sequence)
    WHERE correlation_id <> '';
CREATE INDEX audit_index_time ON audit_index (occurred_at);
