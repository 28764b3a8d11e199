/**
 * The file backend of the cluster store (docs/store.md): one JSON document per store directory,
 * `<dir>/objects.json`, holding every object, the store revision and a bounded log of the
 * latest events. Writers (plugin processes, cnictl, the agent) take `<dir>/lock` with flock(2)
 * (shared/flock.ts), read, change, write a temporary file and rename it over the document: a
 * write is one atomic rename, so a process killed at any point leaves either the old or the
 * new store, and readers (no lock) never see half a file.
 *
 * Watches read the document when the directory changes (fs.watch) and on a poll (fs.watch can
 * miss events, e.g. on network filesystems), and turn the log entries after the revision
 * they have delivered into events. The log holds references, not object bodies (reads stay
 * small: every endpoint ADD reads the store), so several writes to one object between two
 * reads arrive as its last state; a watcher further behind than the log reaches gets a
 * `resync` event with the full state.
 */
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  watch as fsWatch,
  writeSync,
  type FSWatcher,
} from 'node:fs';
import path from 'node:path';
import type { CniObject, Kind } from '../objects/types.ts';
import { withLock } from '../flock.ts';
import { deepFreeze, refOf, storedForm } from './forms.ts';
import {
  ConflictError,
  StoreUnavailableError,
  type ObjectRef,
  type ObjectStore,
  type PutOptions,
  type Stored,
  type WatchEvent,
} from './types.ts';

/** Events the log keeps: a watcher further behind than this gets a resync. */
export const LOG_KEEP = 1000;
const POLL_MS = 1000;
const LOCK_TIMEOUT_S = 30;
export const DOCUMENT = 'objects.json';

/**
 * [revision of the last write, the object as JSON text (no resourceVersion)]. Bodies stay text
 * in the document: parsing the document is then mostly scanning strings, a write re-parses
 * nothing but the document's skeleton, a get parses one object, and every read hands out
 * objects decoded from the current text (a process keeps those it decoded until their revision
 * changes; they are frozen, as every object the store hands out).
 */
type Entry = [number, string];
/** [revision, "p" (put) | "d" (delete), kind, namespace, name] */
type LogEntry = [number, 'p' | 'd', Kind, string, string];
interface Doc {
  version: 2;
  revision: number;
  /** kind -> "namespace/name" -> entry */
  objects: Partial<Record<Kind, Record<string, Entry>>>;
  log: LogEntry[];
}

const emptyDoc = (): Doc => ({ version: 2, revision: 0, objects: {}, log: [] });
const keyOf = (ns: string, name: string): string => `${ns}/${name}`;

export class FileStore implements ObjectStore {
  private readonly file: string;
  private cache: { stamp: string; doc: Doc } | undefined;
  /** decoded objects by kind and key, each at the revision it was decoded from */
  private readonly decoded = new Map<string, Stored>();

  private readonly logKeep: number;
  readonly dir: string;

  /** `logKeep`: events the log keeps (tests make it small). */
  constructor(dir: string, opts: { logKeep?: number } = {}) {
    this.dir = dir;
    this.file = path.join(dir, DOCUMENT);
    this.logKeep = opts.logKeep ?? LOG_KEEP;
  }

  private stamp(): string {
    try {
      const s = statSync(this.file, { bigint: true });
      return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
      throw new StoreUnavailableError(`store ${this.file}: ${(e as Error).message}`);
    }
  }

  /** The document as it is now. `fresh` skips the stat-keyed cache (writers, under the lock). */
  private read(fresh = false): Doc {
    const stamp = fresh ? '' : this.stamp();
    if (!fresh && this.cache?.stamp === stamp) return this.cache.doc;
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return emptyDoc();
      throw new StoreUnavailableError(`store ${this.file}: ${(e as Error).message}`);
    }
    let doc: Doc;
    try {
      doc = JSON.parse(text) as Doc;
    } catch (e) {
      throw new StoreUnavailableError(`store ${this.file} is not valid JSON: ${(e as Error).message}`);
    }
    if (doc.version !== 2 || typeof doc.revision !== 'number' || typeof doc.objects !== 'object' || !Array.isArray(doc.log)) {
      throw new StoreUnavailableError(`store ${this.file} is not a cni-ts object store`);
    }
    if (!fresh) {
      this.cache = { stamp, doc };
      let live = 0;
      for (const byKey of Object.values(doc.objects)) live += Object.keys(byKey ?? {}).length;
      if (this.decoded.size > 2 * live + 64) this.decoded.clear(); // forget deleted objects
    }
    return doc;
  }

  /** Under the lock: no other writer is between its temp file and its rename. */
  private write(doc: Doc): void {
    // temp files left by a writer killed before its rename
    for (const f of readdirSync(this.dir))
      if (f.startsWith(`${DOCUMENT}.`) && f.endsWith('.tmp')) rmSync(path.join(this.dir, f), { force: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, JSON.stringify(doc));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
  }

  /** Read, change and write the document under the store lock. */
  private async update<T>(change: (doc: Doc) => T): Promise<T> {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    } catch (e) {
      throw new StoreUnavailableError(`store ${this.dir}: ${(e as Error).message}`);
    }
    let result: T | undefined;
    try {
      await withLock(
        this.dir,
        async () => {
          const doc = this.read(true);
          result = change(doc);
          this.write(doc);
        },
        'lock',
        LOCK_TIMEOUT_S,
      );
    } catch (e) {
      if (e instanceof ConflictError || e instanceof StoreUnavailableError) throw e;
      // the lock (timed out, no flock), the write (disk full, read-only): not usable now
      throw new StoreUnavailableError(`store ${this.dir}: ${e instanceof Error ? e.message : String(e)}`);
    }
    return result as T;
  }

  private record(doc: Doc, type: 'p' | 'd', ref: ObjectRef): number {
    doc.revision += 1;
    doc.log.push([doc.revision, type, ref.kind, ref.namespace, ref.name]);
    if (doc.log.length > this.logKeep) doc.log.splice(0, doc.log.length - this.logKeep);
    return doc.revision;
  }

  async get<T extends CniObject = CniObject>(ref: ObjectRef): Promise<Stored<T> | undefined> {
    const e = this.read().objects[ref.kind]?.[keyOf(ref.namespace, ref.name)];
    return e ? this.decode<T>(ref.kind, keyOf(ref.namespace, ref.name), e) : undefined;
  }

  async put(object: CniObject, opts: PutOptions = {}): Promise<number> {
    const stored = storedForm(object);
    const ref = refOf(stored);
    const text = JSON.stringify(stored);
    return this.update((doc) => {
      const byKey = (doc.objects[ref.kind] ??= {});
      const key = keyOf(ref.namespace, ref.name);
      const cur = byKey[key];
      if (opts.expectRevision !== undefined && (cur?.[0] ?? 0) !== opts.expectRevision) throw new ConflictError(ref, cur?.[0] ?? 0);
      const revision = this.record(doc, 'p', ref);
      byKey[key] = [revision, text];
      return revision;
    });
  }

  async delete(ref: ObjectRef, opts: PutOptions = {}): Promise<boolean> {
    // Nothing to delete: no lock, no write.
    if (!this.read().objects[ref.kind]?.[keyOf(ref.namespace, ref.name)] && opts.expectRevision === undefined) return false;
    return this.update((doc) => {
      const byKey = doc.objects[ref.kind];
      const key = keyOf(ref.namespace, ref.name);
      const cur = byKey?.[key];
      if (opts.expectRevision !== undefined && (cur?.[0] ?? 0) !== opts.expectRevision) throw new ConflictError(ref, cur?.[0] ?? 0);
      if (!cur || !byKey) return false;
      delete byKey[key];
      this.record(doc, 'd', ref);
      return true;
    });
  }

  async list<T extends CniObject = CniObject>(kind: Kind, namespace?: string): Promise<{ items: Stored<T>[]; revision: number }> {
    const doc = this.read();
    return { items: this.itemsOf<T>(doc, kind, namespace), revision: doc.revision };
  }

  private decode<T extends CniObject>(kind: Kind, key: string, e: Entry): Stored<T> {
    const k = `${kind}\0${key}`;
    const hit = this.decoded.get(k);
    if (hit?.revision === e[0]) return hit as Stored<T>;
    const o = JSON.parse(e[1]) as T;
    o.metadata.resourceVersion = String(e[0]);
    const s = deepFreeze({ object: o, revision: e[0] });
    this.decoded.set(k, s);
    return s;
  }

  /** Objects of a kind (one namespace or all), in key order (namespace/name), as etcd lists them. */
  private itemsOf<T extends CniObject>(doc: Doc, kind: Kind, namespace?: string): Stored<T>[] {
    const prefix = namespace === undefined ? undefined : `${namespace}/`;
    return Object.entries(doc.objects[kind] ?? {})
      .filter(([key]) => prefix === undefined || key.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, e]) => this.decode<T>(kind, key, e));
  }

  /** The events of `doc` after `from`, for `kinds`: each changed object's last state. */
  private eventsAfter(doc: Doc, from: number, kinds: Set<Kind> | undefined): WatchEvent[] {
    const last = new Map<string, LogEntry>();
    for (const l of doc.log) {
      if (l[0] <= from || (kinds && !kinds.has(l[2]))) continue;
      const k = `${l[2]}\0${keyOf(l[3], l[4])}`;
      last.delete(k); // keep insertion order = revision order of the last write
      last.set(k, l);
    }
    const out: WatchEvent[] = [];
    for (const [rev, type, kind, namespace, name] of last.values()) {
      const ref = { kind, namespace, name };
      const e = doc.objects[kind]?.[keyOf(namespace, name)];
      if (type === 'p' && e && e[0] === rev)
        out.push({ type: 'put', ref, object: this.decode(kind, keyOf(namespace, name), e).object, revision: rev });
      else if (type === 'd' && !e) out.push({ type: 'delete', ref, revision: rev });
      // else: superseded by a later write this pass also sees (the map kept only the last)
    }
    return out;
  }

  async watch(onEvent: (e: WatchEvent) => void, opts: { fromRevision: number; kinds?: Kind[] }): Promise<() => void> {
    const kinds = opts.kinds ? new Set(opts.kinds) : undefined;
    let delivered = opts.fromRevision;
    let stopped = false;
    let lastStamp = '';
    const deliver = (e: WatchEvent): void => {
      try {
        onEvent(e);
      } catch {
        /* a consumer's error must not stop the watch */
      }
    };
    const check = (force: boolean): void => {
      if (stopped) return;
      let doc: Doc;
      try {
        const stamp = this.stamp();
        if (!force && stamp === lastStamp) return;
        lastStamp = stamp;
        doc = this.read();
      } catch {
        return; // unreadable now: the next poll tries again
      }
      if (doc.revision === delivered) return;
      const oldest = doc.log[0]?.[0] ?? doc.revision + 1;
      // behind the log, or the store went back (removed and started afresh): the full state
      if (delivered + 1 < oldest || doc.revision < delivered) {
        const items = (kinds ? [...kinds] : (Object.keys(doc.objects) as Kind[])).flatMap((k) => this.itemsOf(doc, k));
        delivered = doc.revision;
        deliver({ type: 'resync', revision: doc.revision, items });
        return;
      }
      for (const e of this.eventsAfter(doc, delivered, kinds)) {
        if (stopped) return;
        deliver(e);
      }
      delivered = doc.revision;
    };
    let watcher: FSWatcher | undefined;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      watcher = fsWatch(this.dir, { persistent: false }, (_ev, name) => {
        if (!name || name === DOCUMENT) check(true);
      });
      watcher.on('error', () => undefined);
    } catch {
      watcher = undefined; // the poll still runs
    }
    const timer = setInterval(() => check(false), POLL_MS);
    check(true);
    return () => {
      stopped = true;
      clearInterval(timer);
      watcher?.close();
    };
  }

  async close(): Promise<void> {
    this.cache = undefined;
  }
}
