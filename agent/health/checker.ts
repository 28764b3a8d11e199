/**
 * Health checks of service backends (annotation `health.cni-ts.dev/check`), run by the agent on
 * the node where the backend lives: TCP connect or HTTP GET (2xx/3xx pass) from the host to the
 * pod address, every `intervalSeconds`, each probe bounded by `timeoutSeconds`. A backend turns
 * unhealthy after `unhealthyThreshold` failures in a row and healthy again after
 * `healthyThreshold` passes in a row; every transition is written to the store as a
 * `BackendHealth` object (namespace of the Service, name `<service>-<address>-<port>`) so every
 * node's services reconciler agrees. Out within interval × unhealthyThreshold (+ one timeout).
 */
import http from 'node:http';
import net from 'node:net';
import type { Logger } from '../../shared/cni/log.ts';
import type { BackendHealth } from '../../shared/objects/types.ts';
import { healthName, type Backend, type HealthCheck, type ServicePortEntry } from '../../shared/services/compile.ts';
import type { ObjectStore } from '../../shared/store/types.ts';

/**
 * Health objects nobody will update again (any node may delete them): no checked service port
 * has that backend any more — its service, its port, its check or its Endpoint is gone, or its
 * node vanished with its Endpoint objects cleaned up — and the last check is older than
 * `graceMs` (so a backend that just appeared, whose Endpoint this pass did not see yet, keeps
 * its object). The owning node deletes its own at once (`HealthChecker.stale`).
 */
export function orphanHealth(
  entries: readonly ServicePortEntry[],
  known: ReadonlyMap<string, BackendHealth>,
  nowMs: number,
  graceMs: number,
): string[] {
  const live = new Set<string>();
  for (const e of entries) {
    if (!e.health) continue;
    for (const b of e.backends) live.add(`${e.namespace}/${healthName(e.name, b.address, b.port)}`);
  }
  return [...known.entries()]
    .filter(([k, h]) => {
      if (live.has(k)) return false;
      const at = Date.parse(h.spec.checkedAt);
      return !Number.isFinite(at) || nowMs - at > graceMs;
    })
    .map(([k]) => k);
}

/**
 * A timeout's verdict waits for one more poll of the sockets (setImmediate runs after it): an agent
 * stalled past the timer on a busy node runs timers before I/O, and would mark a backend down
 * whose answer is already waiting in the kernel.
 */
function afterPoll(f: () => void): () => void {
  return () => void setImmediate(f);
}

export function probeTcp(address: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const c = net.connect({ host: address, port });
    let settled = false;
    const done = (why: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      c.destroy();
      resolve(why);
    };
    const t = setTimeout(
      afterPoll(() => done(`tcp ${address}:${port}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    c.once('connect', () => done(undefined));
    c.once('error', (e: NodeJS.ErrnoException) => done(`tcp ${address}:${port}: ${e.code ?? e.message}`));
  });
}

export function probeHttp(address: string, port: number, path: string, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (why: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      req.destroy();
      resolve(why);
    };
    const req = http.get(
      { host: address, port, path, timeout: timeoutMs, agent: false, headers: { 'user-agent': 'cni-ts-health' } },
      (res) => {
        const code = res.statusCode ?? 0;
        res.resume();
        done(code >= 200 && code < 400 ? undefined : `http ${address}:${port}${path}: status ${code}`);
      },
    );
    const t = setTimeout(
      afterPoll(() => done(`http ${address}:${port}${path}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.once('error', (e: NodeJS.ErrnoException) => done(`http ${address}:${port}${path}: ${e.code ?? e.message}`));
  });
}

interface Target {
  key: string;
  namespace: string;
  service: string;
  backend: Backend;
  check: HealthCheck;
  healthy: boolean;
  fails: number;
  passes: number;
  timer?: NodeJS.Timeout;
  running: boolean;
}

export class HealthChecker {
  private targets = new Map<string, Target>();
  private stopped = false;

  constructor(
    private readonly node: string,
    private readonly store: () => Promise<ObjectStore>,
    private readonly log: Logger,
    /** called after a transition is written (the reconciler re-renders) */
    private readonly onChange: (why: string) => void,
  ) {}

  /** Probe exactly the local backends of the checked services of `entries` (start/stop timers). */
  update(entries: readonly ServicePortEntry[], known: ReadonlyMap<string, BackendHealth>): void {
    if (this.stopped) return;
    const want = new Map<string, { e: ServicePortEntry; b: Backend }>();
    for (const e of entries) {
      if (!e.health) continue;
      for (const b of e.backends) if (b.node === this.node) want.set(`${e.namespace}/${healthName(e.name, b.address, b.port)}`, { e, b });
    }
    for (const [k, t] of this.targets) {
      const w = want.get(k);
      if (!w || JSON.stringify(w.e.health) !== JSON.stringify(t.check)) {
        clearTimeout(t.timer);
        this.targets.delete(k);
      }
    }
    for (const [k, { e, b }] of want) {
      if (this.targets.has(k)) continue;
      const prev = known.get(k);
      const t: Target = {
        key: k,
        namespace: e.namespace,
        service: e.name,
        backend: b,
        check: e.health!,
        healthy: prev ? prev.spec.healthy : true,
        fails: 0,
        passes: 0,
        running: false,
      };
      this.targets.set(k, t);
      this.schedule(t, 0);
    }
  }

  /** The health objects this node owns that no longer have a target (to delete). */
  stale(known: ReadonlyMap<string, BackendHealth>): string[] {
    return [...known.entries()].filter(([k, h]) => h.spec.node === this.node && !this.targets.has(k)).map(([k]) => k);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.targets.values()) clearTimeout(t.timer);
    this.targets.clear();
  }

  private schedule(t: Target, ms: number): void {
    t.timer = setTimeout(() => void this.probe(t), ms);
  }

  private async probe(t: Target): Promise<void> {
    if (this.stopped || this.targets.get(t.key) !== t) return;
    const c = t.check;
    const port = c.port ?? t.backend.port;
    const timeoutMs = c.timeoutSeconds * 1000;
    const why =
      c.type === 'http' ? await probeHttp(t.backend.address, port, c.path, timeoutMs) : await probeTcp(t.backend.address, port, timeoutMs);
    if (this.stopped || this.targets.get(t.key) !== t) return;
    if (why) {
      t.fails++;
      t.passes = 0;
    } else {
      t.passes++;
      t.fails = 0;
    }
    const first = !t.running;
    t.running = true;
    let flip: boolean | undefined;
    if (t.healthy && t.fails >= c.unhealthyThreshold) flip = false;
    else if (!t.healthy && t.passes >= c.healthyThreshold) flip = true;
    if (flip !== undefined || first) {
      if (flip !== undefined) t.healthy = flip;
      await this.write(t, why).catch((e: Error) => this.log.warn(`services: health ${t.key}: cannot write the result: ${e.message}`));
      if (flip !== undefined) {
        this.log.info(
          `services: backend ${t.backend.key} of ${t.namespace}/${t.service} is now ${t.healthy ? 'healthy' : `unhealthy (${why})`}`,
        );
        this.onChange(`health ${t.key}`);
      }
    }
    this.schedule(t, c.intervalSeconds * 1000);
  }

  private async write(t: Target, why: string | undefined): Promise<void> {
    const store = await this.store();
    const name = t.key.slice(t.namespace.length + 1);
    const cur = await store.get<BackendHealth>({ kind: 'BackendHealth', namespace: t.namespace, name });
    if (cur && cur.object.spec.healthy === t.healthy && cur.object.spec.node === this.node) return;
    const obj: BackendHealth = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'BackendHealth',
      metadata: { name, namespace: t.namespace, labels: { 'cni-ts.dev/service': t.service } },
      spec: {
        service: t.service,
        address: t.backend.address,
        port: t.backend.port,
        node: this.node,
        healthy: t.healthy,
        checkedAt: new Date().toISOString(),
        ...(why && !t.healthy ? { reason: why } : {}),
      },
    };
    await store.put(obj);
  }
}
