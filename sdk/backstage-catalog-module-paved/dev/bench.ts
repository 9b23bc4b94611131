// How long an edit in Paved takes to show in Backstage's catalog API, with
// this module in a stock Backstage backend; next to the two round trips
// that bound it (a Paved read, a Backstage read), measured in the same run.
//
//   npm run build
//   PAVED_URL=http://127.0.0.1:50051 PAVED_TOKEN=<admin token> npm run bench -- --edits 50
//
// It creates two teams and a service named bench-<id>-…, publishes and
// installs a plugin version for itself, starts the backend on its own port
// and database prefix (PostgreSQL at BACKSTAGE_DATABASE, default
// postgres://postgres@127.0.0.1:5432), moves the service between the teams
// `--edits` times, then uninstalls, retires what it created and drops its
// databases. `--entities N` imports N more components first (through
// ImportBackstageStream), so each delta's export reads a catalog that size.
// `--json` prints the figures as JSON.
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { bearer, connect } from '../src/client';
import type { InstallPluginResponse__Output } from '../src/generated/paved/v1/InstallPluginResponse';

const args = process.argv.slice(2);
const option = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
};
const edits = Number(option('edits', '50'));
const entities = Number(option('entities', '0'));
const asJson = args.includes('--json');
const pavedUrl = process.env.PAVED_URL ?? 'http://127.0.0.1:50051';
const adminToken = process.env.PAVED_TOKEN ?? '';
const database = process.env.BACKSTAGE_DATABASE ?? 'postgres://postgres@127.0.0.1:5432';
const root = path.resolve(__dirname, '../..');

type Unary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  callback: (error: grpc.ServiceError | null, response?: Res) => void,
) => unknown;

/** One unary call, as a promise. */
function call<Req, Res>(client: object, method: Unary<Req, Res>, request: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(client, request, bearer(adminToken), (error, response) =>
      error || response === undefined ? reject(error) : resolve(response),
    ),
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

function summary(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  return { n: s.length, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] };
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function main() {
  if (!adminToken) throw new Error('PAVED_TOKEN must be an admin token of the Paved at PAVED_URL');
  const { catalog, plugins } = connect(pavedUrl);
  const id = randomUUID().slice(0, 8);
  const [teamA, teamB, service] = [`bench-${id}-a`, `bench-${id}-b`, `bench-${id}-svc`];
  const command = () => ({ requestId: randomUUID() });

  for (const name of [teamA, teamB]) {
    await call(catalog, catalog.createTeam, { ...command(), name });
  }
  await call(catalog, catalog.registerService, {
    ...command(),
    name: service,
    owner: teamA,
    spec: { type: 'SERVICE_TYPE_SERVICE', lifecycle: 'LIFECYCLE_PRODUCTION' },
  });
  const others = Array.from({ length: entities }, (_, i) => `bench-${id}-c${i}`);
  if (entities > 0) {
    const yaml = others
      .map(
        (name) =>
          `---\napiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: ${name}\nspec:\n  type: service\n  lifecycle: production\n  owner: ${teamA}\n`,
      )
      .join('');
    await new Promise<void>((resolve, reject) => {
      const upload = catalog.importBackstageStream(bearer(adminToken), (error) => (error ? reject(error) : resolve()));
      const bytes = Buffer.from(yaml);
      for (let at = 0; at < bytes.length; at += 1 << 20) {
        upload.write({ requestId: at === 0 ? randomUUID() : '', yamlChunk: bytes.subarray(at, at + (1 << 20)) });
      }
      upload.end();
    });
  }
  const plugin = `backstage-catalog-bench-${id}`;
  const scopes = ['catalog:read', 'events:read:catalog'];
  await call(plugins, plugins.publishPlugin, {
    ...command(),
    plugin,
    manifest: { version: '0.1.0', publisher: teamA, title: 'Backstage catalog (bench)', scopes },
  });
  const installed: InstallPluginResponse__Output = await call(plugins, plugins.installPlugin, {
    ...command(),
    installation: plugin,
    plugin,
    version: '0.1.0',
    scopes,
  });

  const port = await freePort();
  const staticToken = `bench-${randomUUID()}`;
  const prefix = `paved_bench_${id}_`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'paved-backstage-bench-'));
  const config = path.join(dir, 'app-config.yaml');
  fs.writeFileSync(
    config,
    JSON.stringify({
      backend: {
        baseUrl: `http://127.0.0.1:${port}`,
        listen: { host: '127.0.0.1', port },
        database: { client: 'pg', connection: database, prefix },
        auth: { externalAccess: [{ type: 'static', options: { token: staticToken, subject: 'bench' } }] },
      },
      catalog: { locations: [], stitchingStrategy: { pollingInterval: { milliseconds: 100 } } },
      paved: { url: pavedUrl, token: installed.token },
    }),
  );
  const log = fs.openSync(path.join(dir, 'backstage.log'), 'a');
  const backend = spawn(process.execPath, [path.join(root, 'dist/dev/backend.js'), '--config', config], {
    cwd: root,
    stdio: ['ignore', log, log],
  });
  const backstageUrl = `http://127.0.0.1:${port}/api/catalog/entities/by-name/component/default/${service}`;
  const owner = async (): Promise<string | undefined> => {
    try {
      const r = await fetch(backstageUrl, { headers: { authorization: `Bearer ${staticToken}` } });
      return r.ok ? ((await r.json()) as { spec: { owner: string } }).spec.owner : undefined;
    } catch {
      return undefined;
    }
  };
  const until = async (want: string, timeoutMs: number) => {
    const started = performance.now();
    while ((await owner()) !== want) {
      if (performance.now() - started > timeoutMs) {
        throw new Error(`${service} did not show owner ${want} in Backstage within ${timeoutMs} ms (log: ${dir})`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return performance.now() - started;
  };

  try {
    const startup = await until(teamA, 180_000);
    // The two round trips an edit's visibility is made of, at rest.
    const pavedRead: number[] = [];
    const backstageRead: number[] = [];
    for (let i = 0; i < 100; i++) {
      let t = performance.now();
      await call(catalog, catalog.getService, { name: service });
      pavedRead.push(performance.now() - t);
      t = performance.now();
      await owner();
      backstageRead.push(performance.now() - t);
    }
    const visible: number[] = [];
    for (let i = 0; i < edits; i++) {
      const to = i % 2 === 0 ? teamB : teamA;
      const t = performance.now();
      await call(catalog, catalog.transferServiceOwnership, { ...command(), name: service, newOwner: to });
      await until(to, 60_000);
      visible.push(performance.now() - t);
      if (!asJson && process.stderr.isTTY) process.stderr.write(`\r${i + 1}/${edits} edits`);
    }
    if (!asJson && process.stderr.isTTY) process.stderr.write('\n');
    const figures = {
      catalog_entities: entities + 4,
      startup_ms: startup,
      edit_visible_ms: summary(visible),
      paved_get_service_ms: summary(pavedRead),
      backstage_get_entity_ms: summary(backstageRead),
    };
    if (asJson) {
      console.log(JSON.stringify(figures));
    } else {
      const row = (what: string, s: ReturnType<typeof summary>) =>
        console.log(
          `${what.padEnd(44)} p50 ${s.p50.toFixed(1).padStart(7)} ms  p90 ${s.p90.toFixed(1).padStart(7)} ms  p99 ${s.p99.toFixed(1).padStart(7)} ms  (n=${s.n})`,
        );
      console.log(`catalog of ${entities + 4} entities; backend start to the first entity: ${(startup / 1000).toFixed(1)} s`);
      row('edit in Paved → visible in Backstage', figures.edit_visible_ms);
      row('raw: Paved GetService round trip', figures.paved_get_service_ms);
      row('raw: Backstage GET entity round trip', figures.backstage_get_entity_ms);
      console.log(`Backstage's log (the provider's own timings per delta): ${path.join(dir, 'backstage.log')}`);
    }
  } finally {
    // Each step on its own: one that fails (say, a team Paved will not
    // retire) must not leave the rest, least of all the databases.
    const step = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (error) {
        console.error(`cleanup: ${what} failed: ${error instanceof Error ? error.message : error}`);
      }
    };
    if (backend.exitCode === null && backend.signalCode === null) {
      const exited = new Promise((r) => backend.once('exit', r));
      backend.kill();
      await exited;
    }
    await step('dropping the databases', async () => {
      const dbs = execFileSync('psql', [database, '-At', '-c', `SELECT datname FROM pg_database WHERE datname LIKE '${prefix}%'`])
        .toString()
        .split('\n')
        .filter(Boolean);
      for (const db of dbs) execFileSync('psql', [database, '-q', '-c', `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`]);
    });
    await step('uninstalling', () =>
      call(plugins, plugins.uninstallPlugin, { ...command(), installation: plugin, reason: 'bench done' }),
    );
    const retire = [service, ...others];
    const retireNext = async (): Promise<void> => {
      const name = retire.pop();
      if (name === undefined) return;
      await step(`retiring ${name}`, () => call(catalog, catalog.retireService, { ...command(), name, reason: 'bench done' }));
      return retireNext();
    };
    await Promise.all(Array.from({ length: 32 }, retireNext));
    for (const name of [teamA, teamB]) {
      await step(`retiring ${name}`, () => call(catalog, catalog.retireTeam, { ...command(), name, reason: 'bench done' }));
    }
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`bench failed: ${error instanceof Error ? error.message : error}`);
    process.exit(1);
  },
);
