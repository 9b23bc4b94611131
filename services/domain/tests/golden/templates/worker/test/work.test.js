import assert from 'node:assert/strict';
import { test } from 'node:test';
import { handle, run } from '../src/work.js';

test('a job is handled', () => {
  assert.deepEqual(handle({ id: 7 }), { id: 7, done: true, by: 'payments-api' });
});

test('the worker stops when asked', async () => {
  const stop = new AbortController();
  const jobs = [{ id: 1 }, { id: 2 }];
  const done = [];
  await run(
    async () => {
      const job = jobs.shift();
      if (!job) stop.abort();
      return job ?? null;
    },
    stop.signal,
    (r) => done.push(r.id),
  );
  assert.deepEqual(done, [1, 2]);
});
