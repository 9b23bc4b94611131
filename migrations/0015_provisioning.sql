-- Provisioning read model (written by the provisioning projection only).

-- One row per request of a team's tenancy.
CREATE TABLE provisioning_requests (
    team          text        NOT NULL,
    number        bigint      NOT NULL,
    resource      text        NOT NULL,
    kind          text        NOT NULL,
    environment   text        NOT NULL,
    service       text        NOT NULL DEFAULT '',
    size          text        NOT NULL DEFAULT '',
    action        text        NOT NULL,
    state         text        NOT NULL,
    requested_by  text        NOT NULL,
    requested_at  timestamptz NOT NULL,
    approver      text        NOT NULL DEFAULT '',
    approved_by   text        NOT NULL DEFAULT '',
    plan_base     text        NOT NULL DEFAULT '',
    -- [{"path": "...", "deleted": false}, ...]
    plan_files    jsonb       NOT NULL DEFAULT '[]',
    plan_diff     text        NOT NULL DEFAULT '',
    drift         jsonb       NOT NULL DEFAULT '[]',
    commit_sha    text        NOT NULL DEFAULT '',
    reason        text        NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL,
    last_sequence bigint      NOT NULL,
    PRIMARY KEY (team, number)
);
-- The GitOps writer's queue, and lists by state.
CREATE INDEX provisioning_requests_open ON provisioning_requests (last_sequence)
    WHERE state IN ('requested', 'approved', 'applying');
CREATE INDEX provisioning_requests_recent ON provisioning_requests (requested_at DESC, team, number);

-- One row per resource of a team.
CREATE TABLE provisioning_resources (
    team          text        NOT NULL,
    resource      text        NOT NULL,
    kind          text        NOT NULL,
    environment   text        NOT NULL,
    service       text        NOT NULL DEFAULT '',
    size          text        NOT NULL DEFAULT '',
    status        text        NOT NULL,
    open_request  bigint,
    commit_sha    text        NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL,
    last_sequence bigint      NOT NULL,
    PRIMARY KEY (team, resource)
);
