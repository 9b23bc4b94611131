// The entity provider: a full mutation from Paved's export at start, then,
// for every batch of catalog events the installation receives, a delta
// mutation (what a fresh export at the batch's sequence changes) and an
// acknowledgement that moves the installation's durable cursor. Anything
// that goes wrong (Paved restarting, a token revoked) ends the subscription;
// the provider then starts over with a full mutation after a backoff.
import type { LoggerService } from '@backstage/backend-plugin-api';
import type { EntityProvider, EntityProviderConnection } from '@backstage/plugin-catalog-node';
import { PavedClient } from './client';
import { diff, parseExport, type Snapshot } from './entities';

export interface PavedEntityProviderOptions {
  client: PavedClient;
  logger: LoggerService;
  /** Paved's address, recorded in each entity's managed-by-location. */
  url: string;
  /** How long events are gathered into one delta (ms). */
  batchMs?: number;
  /** The longest wait before starting over after an error (ms). */
  maxBackoffMs?: number;
}

export class PavedEntityProvider implements EntityProvider {
  private readonly client: PavedClient;
  private readonly logger: LoggerService;
  private readonly location: string;
  private readonly batchMs: number;
  private readonly maxBackoffMs: number;
  private connection?: EntityProviderConnection;
  private snapshot: Snapshot = new Map();
  private stopped = false;
  private cancel?: () => void;

  constructor(options: PavedEntityProviderOptions) {
    this.client = options.client;
    this.logger = options.logger;
    this.location = `paved:${options.url}`;
    this.batchMs = options.batchMs ?? 25;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
  }

  getProviderName(): string {
    return 'paved';
  }

  async connect(connection: EntityProviderConnection): Promise<void> {
    this.connection = connection;
    // The catalog does not wait for Paved: the loop runs on its own.
    void this.run();
  }

  /** Stops following Paved (at backend shutdown). */
  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.client.close();
  }

  private async run(): Promise<void> {
    let backoff = 500;
    while (!this.stopped) {
      try {
        await this.full();
        backoff = 500;
        await this.follow();
      } catch (error) {
        if (this.stopped) return;
        this.logger.warn(`Paved: ${describe(error)}; starting over in ${backoff} ms`);
      }
      await sleep(backoff * (0.8 + Math.random() * 0.4));
      backoff = Math.min(backoff * 2, this.maxBackoffMs);
    }
  }

  /**
   * The whole catalog as one full mutation, read once Paved's catalog holds
   * everything up to the installation's cursor (the subscription resumes
   * after it, so nothing before it may be missing).
   */
  private async full(): Promise<void> {
    const { cursor } = await this.client.position();
    const snapshot = parseExport(await this.client.exportCatalog(cursor), this.location);
    await this.connection!.applyMutation({
      type: 'full',
      entities: [...snapshot.values()].map((entity) => ({ entity, locationKey: this.location })),
    });
    this.snapshot = snapshot;
    this.logger.info(`Paved: ${snapshot.size} entities in the catalog (full mutation)`);
  }

  /** What changed by `sequence`, as one delta mutation. */
  private async delta(sequence: number): Promise<void> {
    const started = performance.now();
    const next = parseExport(await this.client.exportCatalog(sequence), this.location);
    const { added, removed } = diff(this.snapshot, next);
    const read = performance.now() - started;
    if (added.length > 0 || removed.length > 0) {
      await this.connection!.applyMutation({
        type: 'delta',
        added: added.map((entity) => ({ entity, locationKey: this.location })),
        removed: removed.map((key) => ({
          entity: this.snapshot.get(key)!,
          locationKey: this.location,
        })),
      });
      this.logger.info(
        `Paved: sequence ${sequence}: ${added.length} entities added or changed, ${removed.length} removed ` +
          `(export and compare of ${next.size} entities ${read.toFixed(0)} ms, applied in ${(performance.now() - started - read).toFixed(0)} ms)`,
      );
    }
    this.snapshot = next;
  }

  /**
   * The installation's events until the subscription ends: gathered for
   * `batchMs`, applied as one delta, then acknowledged. Resolves when Paved
   * ends the stream, rejects on an error; either only once no delta is in
   * flight, so a later full mutation is never overtaken by an older delta.
   */
  private follow(): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client.subscribe();
      this.cancel = () => call.cancel();
      let seen = 0; // the highest sequence received
      let catalogChanged = false; // since the last delta
      let timer: NodeJS.Timeout | undefined;
      let inFlight: Promise<void> | undefined; // the apply loop, while it runs
      let ended = false;

      const finish = (error?: unknown) => {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        call.cancel();
        void (inFlight ?? Promise.resolve()).then(() => (error === undefined ? resolve() : reject(error)));
      };
      const apply = async () => {
        try {
          while (!ended) {
            const target = seen;
            const changed = catalogChanged;
            catalogChanged = false;
            if (changed) await this.delta(target);
            await this.client.acknowledge(target);
            if (seen === target) break; // nothing arrived meanwhile
          }
        } catch (error) {
          finish(error);
        }
      };
      const start = () => {
        timer = undefined;
        if (inFlight || ended) return;
        inFlight = apply().finally(() => {
          inFlight = undefined;
        });
      };

      call.on('data', ({ record }) => {
        if (!record) return;
        seen = Math.max(seen, Number(record.sequence));
        if (record.context === 'catalog') catalogChanged = true;
        if (!timer && !inFlight) timer = setTimeout(start, this.batchMs);
      });
      call.on('error', (error) => finish(error));
      call.on('end', () => finish());
    });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
