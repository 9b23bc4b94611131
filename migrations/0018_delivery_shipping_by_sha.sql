-- Which deployment ships a change, found by key instead of by time: the
-- production deployments that list a SHA (written by the delivery
-- projection with the deployment), and those that list no commits, by
-- service and finish time. Scanning a service's deployments forward from a
-- change's commit time cost as many rows as the service deployed meanwhile,
-- so catch-up slowed as deployments grew denser (29,500 events/s at 300,000
-- delivery events, 16,100 at 1,000,000, 14,000 at 3,000,000).
CREATE TABLE delivery_deployment_commits (
    sha        text NOT NULL,
    service    text NOT NULL,
    deployment text NOT NULL,
    PRIMARY KEY (sha, service, deployment)
);
INSERT INTO delivery_deployment_commits (sha, service, deployment)
SELECT DISTINCT c.sha, d.service, d.id
  FROM delivery_deployments d, unnest(d.commits) AS c(sha)
 WHERE d.environment = 'production';
CREATE INDEX delivery_deployments_listless ON delivery_deployments (service, finished_at, id)
    WHERE environment = 'production' AND status = 'succeeded' AND cardinality(commits) = 0;
