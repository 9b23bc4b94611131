// Paved's Backstage export as entities a provider hands to the catalog, and
// what changed between two exports. Pure functions: src/provider.ts does
// the I/O, test/entities.test.ts checks these.
import type { Entity } from '@backstage/catalog-model';
import { parseAllDocuments } from 'yaml';

export const ANNOTATION_LOCATION = 'backstage.io/managed-by-location';
export const ANNOTATION_ORIGIN_LOCATION = 'backstage.io/managed-by-origin-location';

/** The catalog as one export saw it: entity key → entity. */
export type Snapshot = Map<string, Entity>;

/**
 * `kind:namespace/name` in lowercase: refs compare case-insensitively in
 * Backstage and in Paved.
 */
export function entityKey(entity: Entity): string {
  const namespace = entity.metadata.namespace ?? 'default';
  return `${entity.kind}:${namespace}/${entity.metadata.name}`.toLowerCase();
}

/**
 * The documents of an export, each marked as managed by `location` (the
 * annotations Backstage requires of every entity a provider emits).
 */
export function parseExport(yaml: string, location: string): Snapshot {
  const snapshot: Snapshot = new Map();
  for (const doc of parseAllDocuments(yaml)) {
    if (doc.errors.length > 0) {
      throw new Error(`Paved's export is not YAML: ${doc.errors[0].message}`);
    }
    const entity = doc.toJS() as Entity | null;
    if (!entity) continue;
    if (!entity.apiVersion || !entity.kind || !entity.metadata?.name) {
      throw new Error("Paved's export holds a document without apiVersion, kind and metadata.name");
    }
    entity.metadata.annotations = {
      ...entity.metadata.annotations,
      [ANNOTATION_LOCATION]: location,
      [ANNOTATION_ORIGIN_LOCATION]: location,
    };
    snapshot.set(entityKey(entity), entity);
  }
  return snapshot;
}

/** What turns `before` into `after`: entities new or changed, keys gone. */
export function diff(before: Snapshot, after: Snapshot): { added: Entity[]; removed: string[] } {
  const added: Entity[] = [];
  for (const [key, entity] of after) {
    const was = before.get(key);
    if (!was || canonical(was) !== canonical(entity)) added.push(entity);
  }
  const removed = [...before.keys()].filter((key) => !after.has(key));
  return { added, removed };
}

/** JSON with object keys sorted, so key order never reads as a change. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
