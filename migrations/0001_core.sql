-- Paved read models: the contract between workers/ (the only writers, one
-- projection per table) and services/api (the readers). Every table here
-- except api_tokens is disposable: `paved replay` rebuilds it from the log.

-- Each projection's checkpoint: the last stream sequence it applied, written
-- in the same transaction as its rows (invariant 4).
CREATE TABLE projection_checkpoints (
    projection    text PRIMARY KEY,
    last_sequence bigint NOT NULL DEFAULT 0 CHECK (last_sequence >= 0),
    -- The durable JetStream consumer that feeds it.
    consumer      text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- API tokens. Not a read model: configuration managed by `paved token`.
-- Only the SHA-256 of a token is stored.
CREATE TABLE api_tokens (
    token_sha256 text PRIMARY KEY,
    principal    text NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'member', 'reader')),
    team         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK ((role = 'member') = (team IS NOT NULL))
);
CREATE INDEX api_tokens_principal ON api_tokens (principal);

-- ---- catalog projection ----

CREATE TABLE catalog_teams (
    name           text PRIMARY KEY,
    display_name   text NOT NULL,
    email          text NOT NULL,
    chat_channel   text NOT NULL,
    parent         text,
    members        jsonb NOT NULL,
    retired_reason text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    last_sequence  bigint NOT NULL
);
CREATE INDEX catalog_teams_parent ON catalog_teams (parent);

CREATE TABLE catalog_systems (
    name           text PRIMARY KEY,
    owner          text NOT NULL,
    display_name   text NOT NULL,
    description    text NOT NULL,
    retired_reason text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    last_sequence  bigint NOT NULL
);
CREATE INDEX catalog_systems_owner ON catalog_systems (owner);

CREATE TABLE catalog_services (
    name               text PRIMARY KEY,
    owner              text NOT NULL,
    type               text NOT NULL,
    lifecycle          text NOT NULL,
    system             text,
    description        text NOT NULL,
    tier               smallint,
    repository_url     text NOT NULL,
    docs_url           text NOT NULL,
    tags               jsonb NOT NULL,
    labels             jsonb NOT NULL,
    annotations        jsonb NOT NULL,
    links              jsonb NOT NULL,
    -- [{name, window_days, availability: {target_percent}} | {..., latency: {percentile, threshold_ms}}]
    slos               jsonb NOT NULL,
    deprecation_reason text,
    retired_reason     text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    last_sequence      bigint NOT NULL
);
CREATE INDEX catalog_services_owner ON catalog_services (owner);
CREATE INDEX catalog_services_system ON catalog_services (system);
CREATE INDEX catalog_services_lifecycle ON catalog_services (lifecycle);
CREATE INDEX catalog_services_tags ON catalog_services USING gin (tags);

-- Service `service` depends on `depends_on` (upstream).
CREATE TABLE catalog_dependencies (
    service     text NOT NULL,
    depends_on  text NOT NULL,
    criticality text,
    PRIMARY KEY (service, depends_on)
);
CREATE INDEX catalog_dependencies_depends_on ON catalog_dependencies (depends_on);
