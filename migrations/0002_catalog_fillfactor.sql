-- Leave room on each page so that updates which do not touch an indexed
-- column (descriptions, SLOs, ...) can be HOT updates: no new index entries.
ALTER TABLE catalog_services SET (fillfactor = 70);
ALTER TABLE catalog_teams SET (fillfactor = 70);
