-- Server secrets generated on first use (the survey pseudonym key), unless
-- configured. Not a read model: never rebuilt, never in the log.
CREATE TABLE api_secrets (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
