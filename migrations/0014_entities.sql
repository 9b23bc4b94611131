-- Catalog entities of kinds without an aggregate of their own (Backstage's
-- API, Resource, Domain, User, Location, and kinds plugins define), stored
-- as the descriptor they came as (events EntityStored / EntityRemoved).
-- Written by the catalog projection.
CREATE TABLE catalog_entities (
    -- The aggregate id (derived from the lowercase ref).
    id            text PRIMARY KEY,
    -- Lowercase `kind:namespace/name`: what refs are compared by.
    ref_key       text NOT NULL UNIQUE,
    -- As given.
    kind          text NOT NULL,
    namespace     text NOT NULL,
    name          text NOT NULL,
    -- Lowercase ref of spec.owner, if any.
    owner         text,
    document      jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    last_sequence bigint NOT NULL
);
CREATE INDEX catalog_entities_kind ON catalog_entities (lower(kind), namespace, name);

-- The relations an entity's well-known spec fields name (ownedBy, partOf,
-- dependsOn, dependencyOf, providesApi, consumesApi, memberOf), from the
-- entity (its id) to a lowercase ref that may not be in the catalog (yet).
-- Rewritten with the entity by the catalog projection.
CREATE TABLE catalog_entity_relations (
    source text NOT NULL,
    type   text NOT NULL,
    target text NOT NULL,
    PRIMARY KEY (source, type, target)
);
CREATE INDEX catalog_entity_relations_target ON catalog_entity_relations (target);
