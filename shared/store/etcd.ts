/**
 * The etcd backend of the cluster store (docs/store.md). One key per object:
 * `<prefix>/<Kind>/<namespace>/<name>` (cluster-scoped kinds: `<prefix>/<Kind>/<name>`), the
 * value the object as JSON. Revisions are etcd's: an object's revision is its key's
 * mod_revision, a list's revision the header revision of the range read, so "list at R, watch
 * from R" is etcd's own guarantee. Compare-and-swap is a transaction on mod_revision (create:
 * on version 0). Watches resume from the last revision they delivered after a reconnect (the
 * client library alone would resume from the header revision it last saw, which can skip
 * events still in flight); a watch etcd cancels (history compacted) becomes a `resync`.
 *
 * etcd3 (with gRPC) is a separate vendor bundle (shared/vendor.cjs): only a process that opens
 * an etcd store parses it.
 */
import { readFileSync } from 'node:fs';
import { Etcd3, type IKeyValue, type IOptions, type Watcher } from 'etcd3';
import { CLUSTER_SCOPED, type CniObject, type Kind } from '../objects/types.ts';
import { refOf, storedForm, withRevision, ALL_KINDS } from './forms.ts';
import {
  ConflictError,
  StoreUnavailableError,
  type ObjectRef,
  type ObjectStore,
  type PutOptions,
  type StoreConfig,
  type Stored,
  type WatchEvent,
} from './types.ts';

export const DEFAULT_PREFIX = '/cni-ts';
// etcdctl's default --command-timeout: a CLI on a busy node should not give up sooner than etcdctl would
const CALL_DEADLINE_MS = 5000;
const PERSISTENT_DEADLINE_MS = 10000;
const KINDS = new Set<string>(ALL_KINDS);

type EtcdConfig = Extract<StoreConfig, { type: 'etcd' }>;

/** cockatiel's IPolicy, as far as etcd3 uses it: run the call once (we retry where it makes sense). */
const once = {
  execute: async <T>(fn: (ctx: { signal: AbortSignal }) => T | Promise<T>): Promise<T> => fn({ signal: new AbortController().signal }),
};

/** Watch stream reconnect delays: 250 ms doubling to 2 s (etcd3's default grows to 30 s). */
function backoff(n = 0): { duration: number; next(): ReturnType<typeof backoff> } {
  return { duration: Math.min(2000, 250 * 2 ** n), next: () => backoff(n + 1) };
}

export function openEtcdStore(c: EtcdConfig, persistent: boolean): ObjectStore {
  return new EtcdStore(c, persistent);
}

export class EtcdStore implements ObjectStore {
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly where: string;
  private readonly deadline: number;

  constructor(c: EtcdConfig, persistent: boolean) {
    this.prefix = (c.prefix ?? DEFAULT_PREFIX).replace(/\/+$/, '');
    this.deadline = persistent ? PERSISTENT_DEADLINE_MS : CALL_DEADLINE_MS;
    const tls = Boolean(c.caFile || c.certFile);
    const hosts = c.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `${tls ? 'https' : 'http'}://${e}`));
    this.where = `etcd ${hosts.join(',')}`;
    const opts: IOptions = {
      hosts,
      dialTimeout: 2000,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.deadline }),
      faultHandling: { host: () => once as never, global: once as never, watchBackoff: backoff() as never },
    };
    try {
      if (c.caFile || c.certFile) {
        opts.credentials = {
          rootCertificate: c.caFile ? readFileSync(c.caFile) : (undefined as unknown as Buffer),
          ...(c.keyFile ? { privateKey: readFileSync(c.keyFile) } : {}),
          ...(c.certFile ? { certChain: readFileSync(c.certFile) } : {}),
        };
      }
    } catch (e) {
      throw new StoreUnavailableError(`${this.where}: TLS files: ${(e as Error).message}`);
    }
    if (c.username && c.password) opts.auth = { username: c.username, password: c.password };
    this.client = new Etcd3(opts);
  }

  key(ref: ObjectRef): string {
    return CLUSTER_SCOPED.has(ref.kind)
      ? `${this.prefix}/${ref.kind}/${ref.name}`
      : `${this.prefix}/${ref.kind}/${ref.namespace}/${ref.name}`;
  }

  /** The reference a key names, or undefined for keys that are not ours. */
  refOfKey(key: string): ObjectRef | undefined {
    if (!key.startsWith(`${this.prefix}/`)) return undefined;
    const parts = key.slice(this.prefix.length + 1).split('/');
    const kind = parts[0] as Kind;
    if (!KINDS.has(kind)) return undefined;
    if (CLUSTER_SCOPED.has(kind)) return parts.length === 2 ? { kind, namespace: '', name: parts[1] as string } : undefined;
    return parts.length === 3 ? { kind, namespace: parts[1] as string, name: parts[2] as string } : undefined;
  }

  private async call<T>(what: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (e) {
      if (e instanceof ConflictError || e instanceof StoreUnavailableError) throw e;
      throw new StoreUnavailableError(`${this.where}: ${what}: ${(e as Error).message.split('\n')[0] ?? ''}`);
    }
  }

  private static decode(kv: IKeyValue): Stored | undefined {
    try {
      return withRevision(JSON.parse(kv.value.toString()) as CniObject, Number(kv.mod_revision));
    } catch {
      return undefined; // not ours or damaged: skipped
    }
  }

  async get<T extends CniObject = CniObject>(ref: ObjectRef): Promise<Stored<T> | undefined> {
    const r = await this.call('get', () => this.client.get(this.key(ref)).exec());
    const kv = r.kvs[0];
    return kv ? (EtcdStore.decode(kv) as Stored<T> | undefined) : undefined;
  }

  async put(object: CniObject, opts: PutOptions = {}): Promise<number> {
    const stored = storedForm(object);
    const ref = refOf(stored);
    const key = this.key(ref);
    const value = JSON.stringify(stored);
    return this.call('put', async () => {
      if (opts.expectRevision === undefined) return Number((await this.client.put(key).value(value).exec()).header.revision);
      const cmp =
        opts.expectRevision === 0 ? this.client.if(key, 'Create', '==', 0) : this.client.if(key, 'Mod', '==', opts.expectRevision);
      const r = await cmp.then(this.client.put(key).value(value)).else(this.client.get(key)).commit();
      if (!r.succeeded) throw new ConflictError(ref, Number(r.responses[0]?.response_range.kvs[0]?.mod_revision ?? 0));
      return Number(r.header.revision);
    });
  }

  async delete(ref: ObjectRef, opts: PutOptions = {}): Promise<boolean> {
    const key = this.key(ref);
    return this.call('delete', async () => {
      if (opts.expectRevision === undefined) return Number((await this.client.delete().key(key).exec()).deleted) > 0;
      if (opts.expectRevision === 0) {
        const cur = (await this.client.get(key).exec()).kvs[0];
        if (cur) throw new ConflictError(ref, Number(cur.mod_revision));
        return false;
      }
      const r = await this.client
        .if(key, 'Mod', '==', opts.expectRevision)
        .then(this.client.delete().key(key))
        .else(this.client.get(key))
        .commit();
      if (!r.succeeded) {
        const cur = r.responses[0]?.response_range.kvs[0];
        if (!cur) return false;
        throw new ConflictError(ref, Number(cur.mod_revision));
      }
      return Number(r.responses[0]?.response_delete_range.deleted ?? 0) > 0;
    });
  }

  async list<T extends CniObject = CniObject>(kind: Kind, namespace?: string): Promise<{ items: Stored<T>[]; revision: number }> {
    const p = namespace !== undefined && !CLUSTER_SCOPED.has(kind) ? `${this.prefix}/${kind}/${namespace}/` : `${this.prefix}/${kind}/`;
    const r = await this.call('list', () => this.client.getAll().prefix(p).exec());
    const items: Stored<T>[] = [];
    for (const kv of r.kvs) {
      if (!this.refOfKey(kv.key.toString())) continue;
      const s = EtcdStore.decode(kv);
      if (s) items.push(s as Stored<T>);
    }
    return { items, revision: Number(r.header.revision) };
  }

  async watch(onEvent: (e: WatchEvent) => void, opts: { fromRevision: number; kinds?: Kind[] }): Promise<() => void> {
    const kinds = opts.kinds ? new Set(opts.kinds) : undefined;
    let last = opts.fromRevision;
    let stopped = false;
    let current: Watcher | undefined;
    let retry: NodeJS.Timeout | undefined;
    const deliver = (e: WatchEvent): void => {
      try {
        onEvent(e);
      } catch {
        /* a consumer's error must not stop the watch */
      }
    };
    const onData = (res: { events: { type: string; kv: IKeyValue }[]; header: { revision: string } }): void => {
      let max = last;
      for (const ev of res.events) {
        const rev = Number(ev.kv.mod_revision);
        if (rev <= last || stopped) continue;
        max = Math.max(max, rev);
        const ref = this.refOfKey(ev.kv.key.toString());
        if (!ref || (kinds && !kinds.has(ref.kind))) continue;
        if (String(ev.type).toLowerCase() === 'delete') deliver({ type: 'delete', ref, revision: rev });
        else {
          const s = EtcdStore.decode(ev.kv);
          if (s) deliver({ type: 'put', ref, object: s.object, revision: rev });
        }
      }
      last = max;
    };
    const start = (): Watcher => {
      // Listeners go on before the watcher connects: etcd may cancel it (compacted) at once.
      const w = this.client
        .watch()
        .prefix(`${this.prefix}/`)
        .startRevision(String(last + 1))
        .watcher();
      current = w;
      w.on('data', onData);
      // Resume where we are, not where the library's header bookkeeping says.
      w.on('disconnected', () => {
        (w.request as { start_revision?: string }).start_revision = String(last + 1);
      });
      // Canceled by etcd (history compacted past `last`): full state, then watch on.
      w.on('error', () => {
        if (current !== w) return;
        current = undefined;
        void w.cancel().catch(() => undefined);
        void resync();
      });
      return w;
    };
    const resync = async (attempt = 0): Promise<void> => {
      if (stopped) return;
      try {
        // One range read over every kind: one consistent revision for the whole state.
        const r = await this.call('resync', () => this.client.getAll().prefix(`${this.prefix}/`).exec());
        const items: Stored[] = [];
        for (const kv of r.kvs) {
          const ref = this.refOfKey(kv.key.toString());
          if (!ref || (kinds && !kinds.has(ref.kind))) continue;
          const s = EtcdStore.decode(kv);
          if (s) items.push(s);
        }
        if (stopped) return;
        last = Number(r.header.revision);
        deliver({ type: 'resync', revision: last, items });
        start();
      } catch {
        retry = setTimeout(() => void resync(attempt + 1), Math.min(2000, 250 * 2 ** attempt));
      }
    };
    const first = start();
    await this.call('watch', async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          first.once('connected', () => resolve());
          first.once('error', () => resolve()); // handled above: a resync follows
          timer = setTimeout(() => reject(new Error('no answer')), this.deadline);
        });
      } catch (e) {
        stopped = true;
        current = undefined;
        void first.cancel().catch(() => undefined);
        throw e;
      } finally {
        if (timer) clearTimeout(timer);
      }
    });
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      const w = current;
      current = undefined;
      void w?.cancel().catch(() => undefined);
    };
  }

  /**
   * Keys and values under any prefix, as text, outside the object layout: for reading data a
   * previous layout left in the same etcd (the overlay's old `<prefix>/subnets/` leases).
   */
  async rawRange(prefix: string): Promise<Array<{ key: string; value: string }>> {
    const r = await this.call('range', () => this.client.getAll().prefix(prefix).exec());
    return r.kvs.map((kv) => ({ key: kv.key.toString(), value: kv.value.toString() }));
  }

  async close(): Promise<void> {
    this.client.close();
  }
}
