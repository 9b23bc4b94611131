-- The plugin marketplace read model (written by the plugins projection only)
-- and plugin tokens (not a read model: secrets, like api_tokens).

-- One row per published version of a plugin.
CREATE TABLE plugin_versions (
    plugin        text        NOT NULL,
    version       text        NOT NULL,
    -- Sort key: the semver's numeric parts, for "latest" and ordering.
    major         bigint      NOT NULL,
    minor         bigint      NOT NULL,
    patch         bigint      NOT NULL,
    prerelease    text        NOT NULL DEFAULT '',
    publisher     text        NOT NULL,
    title         text        NOT NULL DEFAULT '',
    description   text        NOT NULL DEFAULT '',
    homepage      text        NOT NULL DEFAULT '',
    scopes        text[]      NOT NULL,
    event_types   text[]      NOT NULL,
    -- '' = the plugin pulls (Subscribe); else Paved posts here.
    webhook_url   text        NOT NULL DEFAULT '',
    -- active, deprecated, yanked
    status        text        NOT NULL,
    status_reason text        NOT NULL DEFAULT '',
    published_by  text        NOT NULL,
    published_at  timestamptz NOT NULL,
    last_sequence bigint      NOT NULL,
    PRIMARY KEY (plugin, version)
);
CREATE INDEX plugin_versions_search
    ON plugin_versions USING gin (to_tsvector('simple', plugin || ' ' || title || ' ' || description));

-- One row per installation.
CREATE TABLE plugin_installations (
    name               text        PRIMARY KEY,
    plugin             text        NOT NULL,
    version            text        NOT NULL,
    scopes             text[]      NOT NULL,
    -- The team it acts for when it writes; '' = none.
    team               text        NOT NULL DEFAULT '',
    -- The last sequence of the log it acknowledged (0: none yet; its
    -- events then start after installed_sequence).
    cursor             bigint      NOT NULL DEFAULT 0,
    installed_sequence bigint      NOT NULL,
    -- installed, uninstalled
    status             text        NOT NULL,
    uninstalled_reason text        NOT NULL DEFAULT '',
    -- The pinned version's webhook ('' = the plugin pulls).
    webhook_url        text        NOT NULL DEFAULT '',
    -- Why the webhook is disabled ('' = it is not: 410 Gone disables it).
    disabled_reason    text        NOT NULL DEFAULT '',
    -- The failing head message (0: none), its attempts and next try.
    failing_sequence   bigint      NOT NULL DEFAULT 0,
    failing_attempts   integer     NOT NULL DEFAULT 0,
    retry_at           timestamptz,
    installed_by       text        NOT NULL,
    installed_at       timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    last_sequence      bigint      NOT NULL
);
CREATE INDEX plugin_installations_plugin ON plugin_installations (plugin);

-- Messages a webhook failed to take on their last attempt.
CREATE TABLE plugin_dead_letters (
    installation   text        NOT NULL,
    sequence       bigint      NOT NULL,
    attempts       integer     NOT NULL,
    status         integer     NOT NULL,
    error          text        NOT NULL,
    dead_at        timestamptz NOT NULL,
    -- An admin asked for it again and it was not sent yet.
    replay_pending boolean     NOT NULL DEFAULT false,
    -- A replay delivered it.
    delivered      boolean     NOT NULL DEFAULT false,
    last_sequence  bigint      NOT NULL,
    PRIMARY KEY (installation, sequence)
);
CREATE INDEX plugin_dead_letters_pending ON plugin_dead_letters (installation) WHERE replay_pending;

-- Plugin tokens: stored hashed; shown once. A token works while its
-- installation is installed, it is not revoked and not past expires_at
-- (set on the old tokens when one is rotated with an overlap).
CREATE TABLE plugin_tokens (
    token_sha256 text        PRIMARY KEY,
    installation text        NOT NULL,
    -- "<installation>/<request id>": a retried install or rotation replaces
    -- the token it issued (the first answer may never have arrived).
    request_key  text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX plugin_tokens_installation ON plugin_tokens (installation);

-- Webhook secrets (`whsec_…`): not a read model, secrets. The delivery
-- worker signs with every one valid now (two during a rotation's overlap).
CREATE TABLE plugin_webhook_secrets (
    installation text        NOT NULL,
    secret       text        NOT NULL,
    -- As plugin_tokens.request_key: a retried install or rotation replaces it.
    request_key  text        NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX plugin_webhook_secrets_installation ON plugin_webhook_secrets (installation);
