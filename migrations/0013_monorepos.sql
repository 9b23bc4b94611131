-- Monorepos: several services may live in one repository, each in its own
-- directory, and one commit may be a change of several of them.

-- The directory of its repository a service's source lives in (from its
-- backstage.io/source-location annotation or its repository URL; "" for
-- the whole repository). Written by the catalog projection; services
-- projected before this column existed read as the whole repository until
-- `paved replay catalog`.
ALTER TABLE catalog_services ADD COLUMN source_path text NOT NULL DEFAULT '';

-- A change is one commit of one service: one row per (sha, service).
ALTER TABLE delivery_changes DROP CONSTRAINT delivery_changes_pkey;
ALTER TABLE delivery_changes ADD PRIMARY KEY (sha, service);
