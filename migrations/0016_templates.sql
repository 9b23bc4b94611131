-- Golden-path templates read model (written by the templates projection only).

-- One row per published version of a template (its files stay in the log).
CREATE TABLE template_versions (
    name               text        NOT NULL,
    version            bigint      NOT NULL,
    title              text        NOT NULL DEFAULT '',
    description        text        NOT NULL DEFAULT '',
    owner              text        NOT NULL DEFAULT '',
    tags               text[]      NOT NULL DEFAULT '{}',
    digest             text        NOT NULL,
    -- backstage.io/time-saved, in seconds (0: not declared).
    time_saved_seconds bigint      NOT NULL DEFAULT 0,
    -- [{"id": ..., "name": ..., "action": ...}, ...]
    steps              jsonb       NOT NULL DEFAULT '[]',
    -- The paths of its files.
    files              jsonb       NOT NULL DEFAULT '[]',
    -- The Template document (JSON of its YAML).
    document           jsonb       NOT NULL,
    published_by       text        NOT NULL,
    published_at       timestamptz NOT NULL,
    last_sequence      bigint      NOT NULL,
    PRIMARY KEY (name, version)
);

-- One row per task (a run of a template).
CREATE TABLE template_tasks (
    id                   text        PRIMARY KEY,
    template             text        NOT NULL,
    version              bigint      NOT NULL,
    team                 text        NOT NULL,
    -- The service it made (its catalog:register step's entity) or upgrades.
    service              text        NOT NULL DEFAULT '',
    -- create, upgrade
    kind                 text        NOT NULL,
    upgrade_from_version bigint      NOT NULL DEFAULT 0,
    -- running, completed, failed
    status               text        NOT NULL,
    requested_by         text        NOT NULL,
    parameters           jsonb       NOT NULL,
    output               jsonb,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    finished_at          timestamptz,
    last_sequence        bigint      NOT NULL
);
-- The task runner's queue.
CREATE INDEX template_tasks_running ON template_tasks (last_sequence) WHERE status = 'running';
CREATE INDEX template_tasks_recent ON template_tasks (created_at DESC, id);
CREATE INDEX template_tasks_service ON template_tasks (service) WHERE service <> '';

-- One row per step of a task.
CREATE TABLE template_task_steps (
    task        text        NOT NULL,
    position    integer     NOT NULL,
    id          text        NOT NULL,
    name        text        NOT NULL,
    action      text        NOT NULL,
    -- pending, running, done, skipped, failed
    status      text        NOT NULL,
    attempts    integer     NOT NULL DEFAULT 0,
    output      jsonb,
    log         text        NOT NULL DEFAULT '',
    reason      text        NOT NULL DEFAULT '',
    started_at  timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (task, position)
);
