// Paved's gRPC API as this provider uses it: the catalog's Backstage export
// and the installation's event subscription, with the plugin token.
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType as CatalogProto } from './generated/catalog';
import type { ProtoGrpcType as PluginsProto } from './generated/plugins';
import type { CatalogServiceClient } from './generated/paved/v1/CatalogService';
import type { PluginServiceClient } from './generated/paved/v1/PluginService';
import type { EventRecord__Output } from './generated/paved/v1/EventRecord';

export type EventRecord = EventRecord__Output;

/** Where Paved is and who this installation is. */
export interface PavedClientOptions {
  /** `http://host:port` (plaintext) or `https://host:port` (TLS). */
  url: string;
  /** The installation's plugin token (`pvp_…`). */
  token: string;
  /** Where `paved/v1/*.proto` are; the copy shipped with the package by default. */
  protoDir?: string;
}

// The options scripts/generate.js generates the types with.
const LOADER: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The catalog and plugin services' stubs for `url` (`http://` or `https://`). */
export function connect(
  url: string,
  protoDir?: string,
): { catalog: CatalogServiceClient; plugins: PluginServiceClient } {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new Error(`paved.url must be http:// or https://, not ${url}`);
  }
  const includeDirs = [protoDir ?? path.resolve(__dirname, '../../proto')];
  const definition = protoLoader.loadSync(['paved/v1/catalog.proto', 'paved/v1/plugins.proto'], {
    ...LOADER,
    includeDirs,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as CatalogProto & PluginsProto;
  const credentials =
    parsed.protocol === 'https:' ? grpc.credentials.createSsl() : grpc.credentials.createInsecure();
  const channel = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
  return {
    catalog: new loaded.paved.v1.CatalogService(parsed.host, credentials, channel),
    plugins: new loaded.paved.v1.PluginService(parsed.host, credentials, channel),
  };
}

/** `authorization: Bearer <token>`. */
export function bearer(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  return m;
}

export class PavedClient {
  private readonly catalog: CatalogServiceClient;
  private readonly plugins: PluginServiceClient;
  private readonly token: string;

  constructor(options: PavedClientOptions) {
    if (!options.token.startsWith('pvp_')) {
      throw new Error('paved.token must be a plugin token (pvp_…) issued by an installation');
    }
    ({ catalog: this.catalog, plugins: this.plugins } = connect(options.url, options.protoDir));
    this.token = options.token;
  }

  /** The catalog as Backstage YAML, once the projection holds `minSequence`. */
  exportCatalog(minSequence: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const parts: string[] = [];
      const call = this.catalog.exportBackstageStream(
        { minSequence: String(minSequence), includeRetired: false },
        bearer(this.token),
      );
      call.on('data', (chunk) => parts.push(chunk.yaml));
      call.on('error', reject);
      call.on('end', () => resolve(parts.join('')));
    });
  }

  /** The installation's events after its cursor, then live. */
  subscribe(): grpc.ClientReadableStream<{ record: EventRecord | null }> {
    return this.plugins.subscribePluginEvents({ omitJson: true }, bearer(this.token));
  }

  /** Everything up to `sequence` is applied: the cursor moves there. */
  async acknowledge(sequence: number): Promise<number> {
    return (await this.ack(sequence)).cursor;
  }

  /**
   * The installation's cursor and the log's last sequence, the cursor left
   * where it is: acknowledgements are cumulative and never move it back, so
   * acknowledging sequence 1 only asks.
   */
  position(): Promise<{ cursor: number; logSequence: number }> {
    return this.ack(1);
  }

  private ack(sequence: number): Promise<{ cursor: number; logSequence: number }> {
    return new Promise((resolve, reject) => {
      this.plugins.acknowledgePluginEvents({ sequence: String(sequence) }, bearer(this.token), (error, answer) =>
        error || !answer
          ? reject(error)
          : resolve({ cursor: Number(answer.cursor), logSequence: Number(answer.logSequence) }),
      );
    });
  }

  close(): void {
    this.catalog.close();
    this.plugins.close();
  }
}
