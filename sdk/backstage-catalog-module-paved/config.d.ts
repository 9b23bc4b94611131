export interface Config {
  /** Paved: the catalog this module keeps Backstage's catalog in step with. */
  paved: {
    /** Paved's gRPC address, `http://host:port` or `https://host:port`. */
    url: string;
    /**
     * The plugin token of this installation (`pvp_…`), granted at least
     * `catalog:read` and `events:read:catalog`.
     * @visibility secret
     */
    token: string;
    /** Where `paved/v1/*.proto` are (default: the copy in this package). */
    protoDir?: string;
    /** How long catalog events are gathered into one delta mutation, in ms (default 25). */
    batchMs?: number;
  };
}
