-- Changes that arrived as history (their push created the branch, or they
-- were over 30 days old on arrival): kept and shipped, left out of DORA's
-- lead time. Written by the delivery projection.
ALTER TABLE delivery_changes ADD COLUMN backfill boolean NOT NULL DEFAULT false;
