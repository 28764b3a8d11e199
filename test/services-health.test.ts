/**
 * Health checks (agent/health/checker.ts) against servers on loopback: TCP and HTTP probes, and
 * the thresholds (out after unhealthyThreshold failures, back after healthyThreshold passes),
 * with results written to an in-memory store.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthChecker, probeHttp, probeTcp } from '../agent/health/checker.ts';
import { Logger } from '../shared/cni/log.ts';
import type { BackendHealth, CniObject } from '../shared/objects/types.ts';
import type { ServicePortEntry } from '../shared/services/compile.ts';
import type { ObjectStore } from '../shared/store/types.ts';

let httpServer: http.Server;
let httpPort = 0;
let status = 200;
/** /healthz answers so far, by status: the thresholds are counted in these, not in milliseconds */
const answered = new Map<number, number>();
const closedPort = async (): Promise<number> => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
};

beforeAll(async () => {
  httpServer = http.createServer((req, res) => {
    res.writeHead(req.url === '/slow' ? 200 : status);
    if (req.url === '/healthz') answered.set(status, (answered.get(status) ?? 0) + 1);
    if (req.url === '/slow') setTimeout(() => res.end('late'), 1500);
    else res.end('x');
  });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  httpPort = (httpServer.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => httpServer.close(() => r())));

describe('probes', () => {
  it('tcp: a listener passes, a closed port fails with the reason', async () => {
    // generous timeouts where the probe must pass: a process stalled past its timer on a loaded
    // machine sees the timer before the answer
    expect(await probeTcp('127.0.0.1', httpPort, 10_000)).toBeUndefined();
    expect(await probeTcp('127.0.0.1', await closedPort(), 10_000)).toMatch(/ECONNREFUSED/);
  });
  it('tcp: an answer already in the kernel when a stalled agent wakes past its timer passes', async () => {
    const probe = probeTcp('127.0.0.1', httpPort, 20);
    await new Promise((r) => process.nextTick(r)); // after the probe's connect(2) (loopback: done in the kernel at once), before any poll
    const until = Date.now() + 150;
    while (Date.now() < until); // the agent's process stalls past the probe's timer
    expect(await probe).toBeUndefined();
  });
  it('http: 2xx and 3xx pass, 5xx fails, no answer in time fails', async () => {
    status = 200;
    expect(await probeHttp('127.0.0.1', httpPort, '/healthz', 10_000)).toBeUndefined();
    status = 302;
    expect(await probeHttp('127.0.0.1', httpPort, '/healthz', 10_000)).toBeUndefined();
    status = 503;
    expect(await probeHttp('127.0.0.1', httpPort, '/healthz', 10_000)).toMatch(/status 503/);
    status = 200;
    expect(await probeHttp('127.0.0.1', httpPort, '/slow', 300)).toMatch(/no answer in 300 ms/);
  });
});

describe('HealthChecker', () => {
  it('out after unhealthyThreshold failures, back after healthyThreshold passes; results in the store', async () => {
    const objs = new Map<string, CniObject>();
    const store = {
      get: async (ref: { namespace: string; name: string }) => {
        const o = objs.get(`${ref.namespace}/${ref.name}`);
        return o ? { object: o, revision: 1 } : undefined;
      },
      put: async (o: CniObject) => {
        objs.set(`${o.metadata.namespace}/${o.metadata.name}`, o);
        return 1;
      },
    } as unknown as ObjectStore;
    const changes: string[] = [];
    /** the 500 and 200 answers served when each change was reported */
    const servedAtChange: Array<[number, number]> = [];
    const hc = new HealthChecker(
      'n1',
      async () => store,
      new Logger('test', { CNI_LOG_LEVEL: 'error' }),
      (why) => {
        changes.push(why);
        servedAtChange.push([answered.get(500) ?? 0, answered.get(200) ?? 0]);
      },
    );
    const entry = {
      key: 'x/web:80/tcp',
      namespace: 'x',
      name: 'web',
      // a timeout a loaded machine cannot hit by accident (a probe timing out is a failure too)
      health: { type: 'http', path: '/healthz', intervalSeconds: 0.1, timeoutSeconds: 10, unhealthyThreshold: 2, healthyThreshold: 2 },
      backends: [
        { key: `127.0.0.1:${httpPort}`, address: '127.0.0.1', port: httpPort, weight: 1, source: 'x/a', node: 'n1', healthy: true },
      ],
    } as unknown as ServicePortEntry;
    const healthy = (): boolean | undefined => (objs.get(`x/web-127-0-0-1-${httpPort}`) as BackendHealth | undefined)?.spec.healthy;
    const until = async (want: boolean): Promise<void> => {
      const t = Date.now();
      while (healthy() !== want) {
        if (Date.now() - t > 20_000) throw new Error(`still ${healthy()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    status = 200;
    try {
      hc.update([entry], new Map());
      await until(true);
      status = 500;
      await until(false);
      // out after exactly unhealthyThreshold failed probes (the "within interval × threshold"
      // figure is wall-clock: docs/services.md, not asserted here)
      expect(servedAtChange[0]![0]).toBe(2);
      expect((objs.get(`x/web-127-0-0-1-${httpPort}`) as BackendHealth).spec.reason).toMatch(/status 500/);
      status = 200;
      const passedAtFail = answered.get(200) ?? 0;
      await until(true);
      // back after exactly healthyThreshold passing probes
      expect(servedAtChange[1]![1] - passedAtFail).toBe(2);
      expect(changes.length).toBe(2);
    } finally {
      hc.stop();
    }
  });
});
