-- GitHub's numeric id of a claimed repository, once a webhook named it
-- (event RepositoryGithubIdRecorded): a renamed repository keeps mapping to
-- its service. Written by the catalog projection.
ALTER TABLE catalog_repositories ADD COLUMN github_id bigint;
CREATE INDEX catalog_repositories_github_id ON catalog_repositories (github_id)
    WHERE github_id IS NOT NULL;
