-- delivery projection: deployments, changes, incidents (the facts DORA is computed from).

CREATE TABLE delivery_deployments (
    id                text PRIMARY KEY,
    service           text NOT NULL,
    environment       text NOT NULL,
    revision          text NOT NULL,
    commits           text[] NOT NULL,
    rollback_of       text,
    -- paved, or who recorded it (pipeline, argocd-notification, ...)
    source            text NOT NULL,
    -- requested, running, succeeded, failed
    status            text NOT NULL,
    requested_at      timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz,
    application       text,
    phase             text,
    health            text,
    message           text,
    deployed_revision text,
    requested_by      text NOT NULL,
    last_sequence     bigint NOT NULL
);
CREATE INDEX delivery_deployments_finished ON delivery_deployments (environment, finished_at);
CREATE INDEX delivery_deployments_service ON delivery_deployments (service, requested_at DESC);

-- A change reaches production with the first successful production
-- deployment that ships it (see the delivery projection for the rule).
CREATE TABLE delivery_changes (
    sha           text PRIMARY KEY,
    service       text NOT NULL,
    authored_at   timestamptz,
    committed_at  timestamptz NOT NULL,
    merged_at     timestamptz,
    pr_number     bigint NOT NULL,
    pr_url        text NOT NULL,
    author        text NOT NULL,
    title         text NOT NULL,
    deployment    text,
    deployed_at   timestamptz,
    last_sequence bigint NOT NULL
);
CREATE INDEX delivery_changes_deployed ON delivery_changes (deployed_at);
CREATE INDEX delivery_changes_waiting ON delivery_changes (service, committed_at)
    WHERE deployment IS NULL;

CREATE TABLE delivery_incidents (
    id            text PRIMARY KEY,
    title         text NOT NULL,
    services      text[] NOT NULL,
    severity      text NOT NULL,
    started_at    timestamptz NOT NULL,
    resolved_at   timestamptz,
    caused_by     text[] NOT NULL,
    last_sequence bigint NOT NULL
);
CREATE INDEX delivery_incidents_started ON delivery_incidents (started_at);
CREATE INDEX delivery_incidents_services ON delivery_incidents USING gin (services);
