/**
 * A reconciler's store client and its watch. Opened on first use, watching from the revision
 * the reconciler last read (so nothing written between that read and the watch is missed);
 * dropped after repeated failures so the next pass reconnects and re-lists.
 */
import { openStore } from '../shared/store/index.ts';
import type { Kind } from '../shared/objects/types.ts';
import type { ObjectStore, StoreConfig, WatchEvent } from '../shared/store/types.ts';

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
    const store = await openStore(this.config, { persistent: true });
    try {
      const from = this.lastRead() || (await store.list(this.kinds[0]!)).revision;
      this.stopWatch = await store.watch((e) => this.onEvent(e), { fromRevision: from, kinds: this.kinds });
    } catch (e) {
      await store.close().catch(() => undefined);
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
    await st?.close().catch(() => undefined);
  }
}
