/**
 * IPv6 end to end on the real kernel: dual-stack pods x/a..z/c (bridge + host-local with an IPv4
 * and an IPv6 range, then endpoint) in a test host netns, the built agent running there on its
 * own file store. Network policy decides IPv6 traffic exactly as IPv4 (matrices probed over the
 * pods' IPv6 addresses, TCP and UDP), an IPv6 ipBlock, and a dual-stack Service whose IPv6 VIP
 * balances over the backends' IPv6 addresses, with a default-deny applying through it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NetworkPolicy, Service } from '../shared/objects/types.ts';
import { Cleanup, inNs } from './helpers/netns.ts';
import { PolicyMatrix, type PodKey } from './helpers/policy-matrix.ts';
import { lcTcpTargets, startSvcPod, tally, type SvcPod } from './helpers/svc-pods.ts';

const nsOf = (k: PodKey): string => k.split('/')[0]!;
const np = (namespace: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace },
  spec,
});

describe('IPv6: policy and services on dual-stack pods (bridge + host-local + endpoint, agent running)', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  let v6: string;
  let table: string;
  const svcPods = new Map<PodKey, SvcPod>();

  beforeAll(async () => {
    v6 = `fd${Math.floor(Math.random() * 0xff)
      .toString(16)
      .padStart(2, '0')}:${Math.floor(Math.random() * 0xffff).toString(16)}::`;
    m = await PolicyMatrix.create(cleanup, { prefix: 'h6', resyncSeconds: 1, ipv6Subnet: `${v6}/64` });
    m.family = 6;
    table = `${m.tb.id}_svc`;
    const cfg = JSON.parse(readFileSync(m.agentConfig, 'utf8')) as Record<string, unknown>;
    writeFileSync(
      m.agentConfig,
      JSON.stringify({ ...cfg, serviceCIDR: ['10.96.0.0/16', 'fd96::/112'], services: { table }, dns: { enabled: false } }),
    );
    cleanup.add(() => inNs(m.tb.host, 'nft', ['delete', 'table', 'inet', table], true));
    await m.addAllPods();
    for (const k of m.pods.keys()) {
      // pods reach the IPv6 serviceCIDR through their gateway (a runtime's default route does this)
      await inNs(m.pods.get(k)!.netns, 'ip', ['-6', 'route', 'add', 'fd96::/112', 'via', `${v6}1`]);
      expect(m.pods.get(k)!.ip6, `${k} has an IPv6 address`).toMatch(/^fd/);
    }
    m.startAgent();
  }, 240_000);
  afterAll(() => cleanup.run(), 60_000);

  it('every pod reaches every pod over IPv6 with no policy', async () => {
    await m.expectMatrix(80, 'tcp', () => true);
    await m.expectMatrix(80, 'udp', () => true);
  }, 60_000);

  it('default deny ingress in x holds for IPv6 (TCP and UDP), as the evaluator says', async () => {
    await m.apply(np('x', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }));
    try {
      const truth = (_f: PodKey, t: PodKey): boolean => nsOf(t) !== 'x';
      await m.expectMatrix(80, 'tcp', truth);
      await m.expectMatrix(80, 'udp', truth);
      expect(await m.truth(80, 'tcp')).toEqual(await m.probe(80, 'tcp'));
    } finally {
      await m.remove('NetworkPolicy', 'x', 'deny-in');
    }
    await m.expectMatrix(80, 'tcp', () => true);
  }, 90_000);

  it('an IPv6 ipBlock admits exactly the pod whose /128 it names (and its IPv4 address does not matter)', async () => {
    const yb = m.pods.get('y/b')!.ip6!;
    await m.apply(
      np('x', 'a-from-yb6', { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ from: [{ ipBlock: { cidr: `${yb}/128` } }] }] }),
    );
    try {
      await m.expectMatrix(80, 'tcp', (f, t) => t !== 'x/a' || f === 'y/b');
      // over IPv4 nobody is in that block: x/a is closed to all
      m.family = 4;
      await m.expectMatrix(80, 'tcp', (_f, t) => t !== 'x/a');
    } finally {
      m.family = 6;
      await m.remove('NetworkPolicy', 'x', 'a-from-yb6');
    }
  }, 90_000);

  it('a dual-stack Service: its IPv6 VIP round-robins over the backends’ IPv6 addresses; a default deny on the backends applies through it', async () => {
    const backends: PodKey[] = ['z/a', 'z/b', 'z/c'];
    for (const k of backends) {
      await m.label(k, { app: 'web6', pod: k.slice(2) });
      svcPods.set(k, await startSvcPod(cleanup, m.pods.get(k)!.netns.path, k, true));
    }
    const client = await startSvcPod(cleanup, m.pods.get('y/a')!.netns.path, 'y/a', false);
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web6', namespace: 'z' },
      spec: {
        selector: { app: 'web6' },
        clusterIP: '10.96.6.6',
        clusterIPs: ['10.96.6.6', 'fd96::66'],
        ports: [{ name: 'tcp', port: 80, targetPort: 8080 }],
      },
    };
    await m.apply(svc);
    const hits = async (n: number): Promise<string[]> =>
      (await client.ask({ op: 'hits', ip: 'fd96::66', port: 80, proto: 'tcp', n, gapMs: 0, timeoutMs: 1500 })).names as string[];
    const deadline = Date.now() + 20_000;
    let first = await hits(3);
    while (!first.every((x) => x.startsWith('z/'))) {
      if (Date.now() > deadline)
        throw new Error(`IPv6 VIP does not answer: ${JSON.stringify(first)}\n${m.startAgent().log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 300));
      first = await hits(3);
    }
    expect(tally(await hits(60))).toEqual({ 'z/a': 20, 'z/b': 20, 'z/c': 20 });

    await m.apply(np('z', 'deny-in', { podSelector: {}, policyTypes: ['Ingress'] }));
    try {
      const until = Date.now() + 20_000;
      let names = await hits(3);
      while (names.some((x) => x.startsWith('z/'))) {
        if (Date.now() > until) throw new Error(`default deny in z does not apply through the IPv6 VIP: ${JSON.stringify(names)}`);
        await new Promise((r) => setTimeout(r, 300));
        names = await hits(3);
      }
    } finally {
      await m.remove('NetworkPolicy', 'z', 'deny-in');
      await m.remove('Service', 'z', 'web6');
    }
  }, 120_000);

  it('least-connections over IPv6: counts come from IPv6 conntrack entries', async () => {
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'lc6', namespace: 'z', annotations: { 'lb.cni-ts.dev/algorithm': 'least-connections' } },
      spec: {
        selector: { app: 'web6' },
        clusterIP: '10.96.6.7',
        clusterIPs: ['10.96.6.7', 'fd96::67'],
        ports: [{ name: 'tcp', port: 80, targetPort: 8080 }],
      },
    };
    await m.apply(svc);
    const holder = await startSvcPod(cleanup, m.pods.get('y/b')!.netns.path, 'y/b', false);
    const other = await startSvcPod(cleanup, m.pods.get('y/c')!.netns.path, 'y/c', false);
    const hits = async (n: number, gapMs = 0): Promise<string[]> =>
      (await other.ask({ op: 'hits', ip: 'fd96::67', port: 80, proto: 'tcp', n, gapMs, timeoutMs: 1500 })).names as string[];
    const deadline = Date.now() + 20_000;
    while (!(await hits(1))[0]!.startsWith('z/')) {
      if (Date.now() > deadline) throw new Error(`IPv6 least-connections VIP does not answer\n${m.startAgent().log().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    // where the agent points new IPv6 connections now (its map), by backend name: the counts reach
    // the map asynchronously (conntrack events), so the test waits for the map, never a fixed time
    const byIp = new Map((['z/a', 'z/b', 'z/c'] as PodKey[]).map((k) => [m.pods.get(k)!.ip6!, k as string]));
    const points = async (): Promise<string[]> =>
      lcTcpTargets((await inNs(m.tb.host, 'nft', ['-j', 'list', 'table', 'inet', table])).stdout)
        .filter((a) => a.includes(':'))
        .map((a) => byIp.get(a) ?? a);
    const until = async (what: string, ok: (t: string[]) => boolean): Promise<void> => {
      const end = Date.now() + 20_000;
      for (let t = await points(); !ok(t); t = await points()) {
        if (Date.now() > end) throw new Error(`${what}: the map points at ${JSON.stringify(t)}\n${m.startAgent().log().slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      // two long-lived connections, each once the map points away from the held ones: they land
      // on two different backends; new short ones go to the third
      const held: string[] = [];
      for (let i = 0; i < 2; i++) {
        held.push(...((await holder.ask({ op: 'hold', ip: 'fd96::67', port: 80, n: 1 })).names as string[]));
        await until(`the least-connections map to leave ${held.join(', ')}`, (t) => t.length === 1 && !held.includes(t[0]!));
      }
      expect(new Set(held).size).toBe(2);
      const free = ['z/a', 'z/b', 'z/c'].find((b) => !held.includes(b))!;
      for (let i = 0; i < 5; i++) {
        await until(`the least-connections map to point at ${free}`, (t) => t.length === 1 && t[0] === free);
        expect(await hits(1)).toEqual([free]);
      }
    } finally {
      await holder.ask({ op: 'release' });
      await m.remove('Service', 'z', 'lc6');
    }
  }, 120_000);
});
