-- Repository claims (aggregate type "repository"): which service holds a
-- source repository. Written by the catalog projection.
CREATE TABLE catalog_repositories (
    -- e.g. github.com/acme/payments-api (see the domain's repository_identity).
    identity      text PRIMARY KEY,
    service       text NOT NULL,
    claimed_at    timestamptz NOT NULL,
    last_sequence bigint NOT NULL
);

-- The repository each service names, normalised the same way (its
-- github.com/project-slug annotation, else its repository URL). Services
-- projected before this column existed have none until `paved replay catalog`.
ALTER TABLE catalog_services ADD COLUMN repository text;
CREATE INDEX catalog_services_repository ON catalog_services (repository)
    WHERE repository IS NOT NULL;
