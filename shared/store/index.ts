/**
 * Open the cluster store a config names (docs/store.md). Backends load on demand: a plugin
 * that uses the file store never parses the etcd client.
 */
import type { ObjectStore, StoreConfig } from './types.ts';

export * from './types.ts';
export * from './forms.ts';

export interface OpenOptions {
  /**
   * A long-running caller (the agent): etcd calls get longer deadlines. Short-lived callers
   * (plugins, cnictl) fail fast with StoreUnavailableError.
   */
  persistent?: boolean;
}

export async function openStore(config: StoreConfig, opts: OpenOptions = {}): Promise<ObjectStore> {
  if (config.type === 'file') return new (await import('./file.ts')).FileStore(config.path);
  if (config.type === 'etcd') return (await import('./etcd.ts')).openEtcdStore(config, opts.persistent ?? false);
  throw new Error(`unknown store type ${JSON.stringify((config as { type: unknown }).type)}`);
}
