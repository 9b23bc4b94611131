// The pure half of the provider: an export read as entities, and the delta
// between two exports.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { diff, entityKey, parseExport } from '../src/entities';

const EXPORT = `---
apiVersion: backstage.io/v1alpha1
kind: Group
metadata:
  name: Payments
spec:
  type: team
  children: []
---
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: payments-api
  namespace: ops
  annotations:
    github.com/project-slug: acme/payments
spec:
  type: service
  lifecycle: production
  owner: group:default/payments
`;

test('every document becomes an entity managed by Paved, keyed case-insensitively', () => {
  const snapshot = parseExport(EXPORT, 'paved:http://paved:50051');
  assert.deepEqual([...snapshot.keys()], ['group:default/payments', 'component:ops/payments-api']);
  const api = snapshot.get('component:ops/payments-api')!;
  assert.equal(api.metadata.annotations!['github.com/project-slug'], 'acme/payments');
  assert.equal(api.metadata.annotations!['backstage.io/managed-by-location'], 'paved:http://paved:50051');
  assert.equal(api.metadata.annotations!['backstage.io/managed-by-origin-location'], 'paved:http://paved:50051');
  assert.equal(entityKey(snapshot.get('group:default/payments')!), 'group:default/payments');
});

test('a delta names what is new or changed and what is gone, never what stayed', () => {
  const before = parseExport(EXPORT, 'paved:x');
  const after = parseExport(
    EXPORT.replace('lifecycle: production', 'lifecycle: deprecated') +
      `---
apiVersion: backstage.io/v1alpha1
kind: System
metadata: {name: payments}
spec: {owner: payments}
`,
    'paved:x',
  );
  after.delete('group:default/payments');
  const { added, removed } = diff(before, after);
  assert.deepEqual(added.map(entityKey), ['component:ops/payments-api', 'system:default/payments']);
  assert.deepEqual(removed, ['group:default/payments']);
  assert.deepEqual(diff(after, after), { added: [], removed: [] });
});

test('key order is not a change', () => {
  const a = parseExport('kind: Group\napiVersion: v1\nmetadata: {name: a, title: T}\nspec: {type: team}\n', 'paved:x');
  const b = parseExport('apiVersion: v1\nkind: Group\nspec: {type: team}\nmetadata: {title: T, name: a}\n', 'paved:x');
  assert.deepEqual(diff(a, b), { added: [], removed: [] });
});

test('an export that is not YAML or lacks an identity is refused', () => {
  assert.throws(() => parseExport('kind: [\n', 'paved:x'), /not YAML/);
  assert.throws(() => parseExport('kind: Component\nmetadata: {}\n', 'paved:x'), /metadata.name/);
});
