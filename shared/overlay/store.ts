/**
 * Where hosts publish their subnet leases. Two backends behind one contract (the same tests run
 * against both): etcd for a cluster, a JSON file for one host or a shared filesystem.
 * A lease is created only when its subnet is free (atomic create-if-absent), renewed only by
 * its holder, and disappears once its TTL passes without renewal.
 */
import type { Logger } from '../cni/log.ts';
import type { StoreConf } from './config.ts';
import { validLeases, type LeaseContext } from './lease-parse.ts';
import type { Lease, Store } from './store-contract.ts';

export * from './store-contract.ts';

export async function openStore(conf: StoreConf, opts: { persistent?: boolean } = {}): Promise<Store> {
  if (conf.type === 'file') return new (await import('./store-file.ts')).FileStore(conf.path);
  return new (await import('./store-etcd.ts')).EtcdStore(conf.endpoints, conf.prefix, opts.persistent ?? false);
}

/** The valid live leases of a store; invalid records are skipped and logged (once per content). */
export async function listLeases(store: Store, ctx: LeaseContext, log?: Logger): Promise<Lease[]> {
  return validLeases(await store.list(), ctx, log);
}
