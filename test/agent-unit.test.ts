/** agent/loop.ts: kicks collapse, failures back off and recover, resync ticks; the API answers. */
import { afterEach, describe, expect, it } from 'vitest';
import { Loop } from '../agent/loop.ts';
import { answer, parseListen } from '../agent/api.ts';
import { Logger } from '../shared/cni/log.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DnsReconciler, dnsConfigOf } from '../agent/reconcilers/dns.ts';
import { parseAgentConfig } from '../shared/agentconfig.ts';
import { openStore } from '../shared/store/index.ts';
import type { CniObject } from '../shared/objects/types.ts';
import { testPort } from './helpers/run.ts';
import { until } from './helpers/wait.ts';

const log = new Logger('test', { CNI_LOG_LEVEL: 'error' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const loops: Loop[] = [];
afterEach(async () => {
  for (const l of loops.splice(0)) await l.stop();
});

describe('agent reconcile loop', () => {
  it('runs once at start and collapses a burst of kicks into one more pass', async () => {
    const whys: string[] = [];
    let release: () => void = () => undefined;
    const l = new Loop({
      name: 't',
      log,
      resyncMs: 0,
      reconcile: async (why) => {
        whys.push(why);
        if (whys.length === 1) await new Promise<void>((r) => (release = r));
      },
    });
    loops.push(l);
    l.start();
    await sleep(5);
    for (let i = 0; i < 50; i++) l.kick(`event ${i % 3}`);
    release();
    await l.idle();
    expect(whys).toEqual(['start', 'event 0, event 1, event 2']);
    expect(l.status()).toMatchObject({ state: 'ok', passes: 2, failures: 0 });
  });

  it('backs off after a failure, reports it, and recovers', async () => {
    let n = 0;
    const l = new Loop({
      name: 't',
      log,
      resyncMs: 0,
      backoffMinMs: 20,
      backoffMaxMs: 40,
      reconcile: async () => {
        if (++n <= 3) throw new Error(`boom ${n}`);
        return 'fine';
      },
    });
    loops.push(l);
    l.start();
    await sleep(5);
    expect(l.status()).toMatchObject({ state: 'failing', consecutiveFailures: 1, lastError: 'boom 1' });
    await l.idle();
    expect(n).toBe(4);
    expect(l.status()).toMatchObject({ state: 'ok', failures: 3, consecutiveFailures: 0, lastSummary: 'fine' });
  });

  it('resyncs periodically', async () => {
    const whys: string[] = [];
    const l = new Loop({ name: 't', log, resyncMs: 30, reconcile: async (why) => void whys.push(why) });
    loops.push(l);
    l.start();
    // wait for the passes themselves: a loaded machine can stall this process past several
    // 30 ms periods, and setInterval does not catch up (a fixed 110 ms sleep saw 1 resync then)
    await until(
      'two resync passes',
      () => whys.filter((w) => w === 'resync').length,
      (n) => n >= 2,
      10_000,
      10,
    );
    await l.stop();
    expect(whys[0]).toBe('start');
    expect(whys.filter((w) => w === 'resync').length).toBeGreaterThanOrEqual(2);
  });
});

describe('agent API', () => {
  it('answers status and resync, and refuses unknown requests', async () => {
    const h = {
      status: () => ({ node: 'n', pid: 1, startedAt: '', store: 'file /x', memory: { rss: 1, heapUsed: 1 }, reconcilers: [] }),
      resync: async (name?: string) => {
        if (name === 'nope') throw new Error('no reconciler named "nope"');
        return [];
      },
    };
    expect(await answer(h, { type: 'status' })).toMatchObject({ ok: true, type: 'status', status: { node: 'n' } });
    expect(await answer(h, { type: 'resync' })).toEqual({ ok: true, type: 'resync', reconcilers: [] });
    expect(await answer(h, { type: 'resync', name: 'nope' })).toEqual({ ok: false, error: 'no reconciler named "nope"' });
    expect(await answer(h, { type: 'what' } as never)).toMatchObject({ ok: false });
    expect(parseListen('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    expect(parseListen('127.0.0.1:80')).toEqual({ host: '127.0.0.1', port: 80 });
  });
});

describe('agent DNS reconciler (in-process, file store, loopback listener)', () => {
  it('serves the store, follows its watch, answers the socket requests; off with dns.enabled false', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hw-dnsrec-'));
    try {
      const cfg = parseAgentConfig({
        store: { type: 'file', path: dir },
        node: 'n1',
        dns: { listen: [`127.0.0.1:${testPort()}`], listenOnGateways: false, upstreams: [] },
      });
      // clusterDomain and dns.ttl are honoured
      const custom = parseAgentConfig({
        store: { type: 'file', path: dir },
        clusterDomain: 'k8s.test',
        dns: { listen: [`127.0.0.1:${testPort()}`], upstreams: [], ttl: { service: 120 } },
      });
      expect(dnsConfigOf(parseAgentConfig({ store: { type: 'file', path: dir }, dns: { enabled: false } }))).toBeUndefined();
      expect(() => dnsConfigOf(parseAgentConfig({ store: { type: 'file', path: dir }, dns: { port: 'x' } }))).toThrow(/dns\.port/);
      const store = await openStore(cfg.store);
      const svc = (name: string, ip: string): CniObject =>
        ({
          apiVersion: 'v1',
          kind: 'Service',
          metadata: { name, namespace: 'default' },
          spec: { clusterIP: ip, ports: [{ name: 'http', port: 80 }] },
        }) as unknown as CniObject;
      await store.put(svc('web', '10.96.0.10'));
      const r = new DnsReconciler(cfg, dnsConfigOf(cfg)!, log, { resyncMs: 0 });
      r.start();
      await r.loop.idle();
      expect(r.loop.status().state).toBe('ok');
      const h = {
        status: () => ({ node: 'n', pid: 1, startedAt: '', store: '', memory: { rss: 1, heapUsed: 1 }, reconcilers: [] }),
        resync: async () => [],
        dnsRecords: () => r.records(),
        dnsLookup: (n: string, t?: string, net?: string) => r.lookup(n, t, net),
      };
      const recs = await answer(h, { type: 'dns-records' });
      expect(recs.ok && recs.type === 'dns-records' && recs.dns.records).toContainEqual({
        name: 'web.default.svc.cluster.local.',
        type: 'A',
        ttl: 300,
        data: '10.96.0.10',
      });
      expect(recs.ok && recs.type === 'dns-records' && recs.dns.listeners.map((l) => l.address)).toEqual(['127.0.0.1']);
      expect(await answer(h, { type: 'dns-lookup', name: '_http._tcp.web.default.svc.cluster.local', qtype: 'SRV' })).toMatchObject({
        ok: true,
        lookup: { rcode: 'NOERROR', answers: [{ type: 'SRV', data: '0 100 80 web.default.svc.cluster.local.' }] },
      });
      expect(await answer(h, { type: 'dns-lookup', name: 'example.com' })).toMatchObject({ ok: true, lookup: { forwarded: true } });
      // a watch event is served without a pass
      await store.put(svc('late', '10.96.0.11'));
      const deadline = Date.now() + 5000;
      while (r.lookup('late.default.svc.cluster.local').rcode !== 'NOERROR' && Date.now() < deadline) await sleep(20);
      expect(r.lookup('late.default.svc.cluster.local').answers?.[0]?.data).toBe('10.96.0.11');
      await store.delete({ kind: 'Service', namespace: 'default', name: 'late' });
      while (r.lookup('late.default.svc.cluster.local').rcode !== 'NXDOMAIN' && Date.now() < deadline) await sleep(20);
      expect(r.lookup('late.default.svc.cluster.local').rcode).toBe('NXDOMAIN');
      // headless: a backend the services health checks marked down (BackendHealth) leaves the answer
      const eps = (ip: string, name: string): CniObject =>
        ({
          apiVersion: 'cni-ts.dev/v1',
          kind: 'Endpoint',
          metadata: { name, namespace: 'default', labels: { app: 'db' } },
          spec: { node: 'n1', network: 'net', containerId: name, ifname: 'eth0', ips: [`${ip}/24`] },
        }) as unknown as CniObject;
      await store.put({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'db', namespace: 'default' },
        spec: { clusterIP: 'None', selector: { app: 'db' }, ports: [{ name: 'pg', port: 5432 }] },
      } as unknown as CniObject);
      await store.put(eps('10.1.0.5', 'db-0'));
      await store.put(eps('10.1.0.6', 'db-1'));
      const addrs = (): string[] => (r.lookup('db.default.svc.cluster.local').answers ?? []).map((a) => String(a.data)).sort();
      while (addrs().length !== 2 && Date.now() < deadline + 5000) await sleep(20);
      expect(addrs()).toEqual(['10.1.0.5', '10.1.0.6']);
      const health = (healthy: boolean): CniObject =>
        ({
          apiVersion: 'cni-ts.dev/v1',
          kind: 'BackendHealth',
          metadata: { name: 'db-10-1-0-6-5432', namespace: 'default' },
          spec: { service: 'db', address: '10.1.0.6', port: 5432, node: 'n1', healthy, checkedAt: new Date().toISOString() },
        }) as unknown as CniObject;
      await store.put(health(false));
      while (addrs().length !== 1 && Date.now() < deadline + 10000) await sleep(20);
      expect(addrs()).toEqual(['10.1.0.5']);
      await store.put(health(true));
      while (addrs().length !== 2 && Date.now() < deadline + 15000) await sleep(20);
      expect(addrs()).toEqual(['10.1.0.5', '10.1.0.6']);
      await r.stop();
      const r2 = new DnsReconciler(custom, dnsConfigOf(custom)!, log, { resyncMs: 0 });
      r2.start();
      await r2.loop.idle();
      expect(r2.lookup('web.default.svc.k8s.test').answers).toEqual([
        { name: 'web.default.svc.k8s.test.', type: 'A', ttl: 120, data: '10.96.0.10' },
      ]);
      await r2.stop();
      await store.close();
      const off = { status: h.status, resync: h.resync };
      expect(await answer(off, { type: 'dns-records' })).toMatchObject({ ok: false, error: expect.stringMatching(/dns\.enabled/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
