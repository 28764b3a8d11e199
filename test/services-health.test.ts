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
    if (req.url === '/slow') setTimeout(() => res.end('late'), 1500);
    else res.end('x');
  });
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r));
  httpPort = (httpServer.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => httpServer.close(() => r())));

describe('probes', () => {
  it('tcp: a listener passes, a closed port fails with the reason', async () => {
    expect(await probeTcp('127.0.0.1', httpPort, 500)).toBeUndefined();
    expect(await probeTcp('127.0.0.1', await closedPort(), 500)).toMatch(/ECONNREFUSED/);
  });
  it('http: 2xx and 3xx pass, 5xx fails, no answer in time fails', async () => {
    status = 200;
    expect(await probeHttp('127.0.0.1', httpPort, '/healthz', 500)).toBeUndefined();
    status = 302;
    expect(await probeHttp('127.0.0.1', httpPort, '/healthz', 500)).toBeUndefined();
    status = 503;
    expect(await probeHttp('127.0.0.1', httpPort, '/healthz', 500)).toMatch(/status 503/);
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
    const hc = new HealthChecker(
      'n1',
      async () => store,
      new Logger('test', { CNI_LOG_LEVEL: 'error' }),
      (why) => changes.push(why),
    );
    const entry = {
      key: 'x/web:80/tcp',
      namespace: 'x',
      name: 'web',
      health: { type: 'http', path: '/healthz', intervalSeconds: 0.1, timeoutSeconds: 0.3, unhealthyThreshold: 2, healthyThreshold: 2 },
      backends: [
        { key: `127.0.0.1:${httpPort}`, address: '127.0.0.1', port: httpPort, weight: 1, source: 'x/a', node: 'n1', healthy: true },
      ],
    } as unknown as ServicePortEntry;
    const healthy = (): boolean | undefined => (objs.get(`x/web-127-0-0-1-${httpPort}`) as BackendHealth | undefined)?.spec.healthy;
    const until = async (want: boolean): Promise<number> => {
      const t = Date.now();
      while (healthy() !== want) {
        if (Date.now() - t > 5000) throw new Error(`still ${healthy()}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return Date.now() - t;
    };
    status = 200;
    try {
      hc.update([entry], new Map());
      await until(true);
      status = 500;
      const out = await until(false);
      expect(out).toBeLessThan(2000); // bound: interval × unhealthyThreshold (+ timeouts)
      expect((objs.get(`x/web-127-0-0-1-${httpPort}`) as BackendHealth).spec.reason).toMatch(/status 500/);
      status = 200;
      await until(true);
      expect(changes.length).toBe(2);
    } finally {
      hc.stop();
    }
  });
});
