-- A service's production deployments by finish time: which deployment
-- ships a change (the delivery projection) and DORA's facts (the API).
-- A service's changes by shipping time.
CREATE INDEX delivery_deployments_production ON delivery_deployments (service, finished_at)
    WHERE environment = 'production';
CREATE INDEX delivery_changes_shipped ON delivery_changes (service, deployed_at);
