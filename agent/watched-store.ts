/**
 * A reconciler's store client and its watch. Opened on first use, watching from the revision
 * the reconciler last read (so nothing written between that read and the watch is missed);
 * dropped after repeated failures so the next pass reconnects and re-lists.
 */
import { openStore } from '../shared/store/index.ts';
import type { Kind } from '../shared/objects/types.ts';
import type { ObjectStore, StoreConfig, WatchEvent } from '../shared/store/types.ts';

/**
 * File stores shared by the reconcilers of one process (by directory): a FileStore caches the
 * parsed document by the file's stat, so with one instance a write is read and parsed once for
 * every reconciler's watch and pass, not once per reconciler. Reference-counted; etcd clients
 * are not shared (each reconciler keeps its own connection and can replace it alone).
 */
const sharedFileStores = new Map<string, { store: Promise<ObjectStore>; refs: number }>();

function acquire(config: StoreConfig): Promise<ObjectStore> {
  if (config.type !== 'file' || process.env.CNI_TS_SHARED_FILE_STORE === '0') return openStore(config, { persistent: true });
  let e = sharedFileStores.get(config.path);
  if (!e) sharedFileStores.set(config.path, (e = { store: openStore(config, { persistent: true }), refs: 0 }));
  e.refs++;
  return e.store;
}

async function release(config: StoreConfig, store: ObjectStore): Promise<void> {
  const key = config.type === 'file' ? config.path : undefined;
  const e = key === undefined ? undefined : sharedFileStores.get(key);
  if (key === undefined || !e || (await e.store) !== store) {
    await store.close().catch(() => undefined);
    return;
  }
  if (--e.refs > 0) return;
  sharedFileStores.delete(key);
  await store.close().catch(() => undefined);
}

export class WatchedStore {
  private store: ObjectStore | undefined;
  private stopWatch: (() => void) | undefined;

  constructor(
    private readonly config: StoreConfig,
    private readonly kinds: Kind[],
    private readonly onEvent: (e: WatchEvent) => void,
    /** the revision of the reconciler's last read (0: none yet, watch from now) */
    private readonly lastRead: () => number,
  ) {}

  async get(): Promise<ObjectStore> {
    if (this.store) return this.store;
    const store = await acquire(this.config);
    try {
      const from = this.lastRead() || (await store.list(this.kinds[0]!)).revision;
      this.stopWatch = await store.watch((e) => this.onEvent(e), { fromRevision: from, kinds: this.kinds });
    } catch (e) {
      await release(this.config, store);
      throw e;
    }
    this.store = store;
    return store;
  }

  async drop(): Promise<void> {
    this.stopWatch?.();
    this.stopWatch = undefined;
    const st = this.store;
    this.store = undefined;
    if (st) await release(this.config, st);
  }
}
