-- Which deployment ships a change: the delivery projection looks up a
-- service's successful production deployments from a change's commit time,
-- and the changes of a service shipped after a time.
CREATE INDEX delivery_deployments_shipping ON delivery_deployments (service, finished_at)
    WHERE environment = 'production' AND status = 'succeeded';
CREATE INDEX delivery_changes_shipped ON delivery_changes (service, deployed_at);
