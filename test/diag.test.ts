/**
 * `cnictl diag` on the real kernel: pods x/a, x/b, x/c, y/a, y/b attached with the built
 * bridge + host-local + endpoint inside a test "host" netns, the built agent running there on a
 * private file store (policy, services with health checks, DNS on the gateway), and an
 * "outside" netns behind a 1400-byte link. One healthy path (complete report, no finding, exit
 * 0), then one broken path per cause, where the diagnosis names exactly that cause (exit 1).
 * Every report is validated against docs/diagnostics.schema.json. Every probe stays inside the
 * test's namespaces (the DNS upstream is a closed port on the host netns' loopback).
 */
import { Ajv } from 'ajv';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CniObject, NetworkPolicy, Service } from '../shared/objects/types.ts';
import { cacheEntry, writeCache } from '../shared/libcni/cache.ts';
import { Cleanup, inNs, makeNetns, randomTransferNet, sh, type TestNetns } from './helpers/netns.ts';
import { containerPorts, PolicyMatrix, type PodKey } from './helpers/policy-matrix.ts';
import { BIN, ROOT, uid } from './helpers/run.ts';
import type { ConnectivityReport, DiagReport, EndpointReport, ServiceReport } from '../tools/cnictl/diag/schema.ts';

const schema = JSON.parse(readFileSync(path.join(ROOT, 'docs', 'diagnostics.schema.json'), 'utf8')) as Record<string, unknown>;
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
const PODS: PodKey[] = ['x/a', 'x/b', 'x/c', 'y/a', 'y/b'];
/** where worked examples for docs/diagnostics.md are written when DIAG_EXAMPLES=DIR */
const EXAMPLES = process.env.DIAG_EXAMPLES;

describe('cnictl diag: a healthy path and one broken path per cause', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  let outside: TestNetns;
  let far: string;
  const ip = (k: PodKey): string => m.pods.get(k)!.ip;

  /** cnictl diag ... -o json: exit code and the validated report */
  async function diag<T extends DiagReport>(args: string[], example?: string): Promise<{ code: number; r: T; text: string }> {
    const res = await m.cnictl(['diag', ...args, '-o', 'json']);
    let r: T;
    try {
      r = JSON.parse(res.stdout) as T;
    } catch {
      throw new Error(`cnictl diag ${args.join(' ')}: exit ${res.exitCode}, not JSON: ${res.stdout} ${res.stderr}`);
    }
    if (!validate(r))
      throw new Error(`report does not match docs/diagnostics.schema.json: ${JSON.stringify(validate.errors, null, 1)}\n${res.stdout}`);
    let text = '';
    if (example) {
      const h = await m.cnictl(['diag', ...args]);
      text = h.stdout;
      if (EXAMPLES)
        writeFileSync(path.join(EXAMPLES, `${example}.txt`), `$ cnictl diag ${args.join(' ')}\n${h.stdout}\n(exit code ${h.exitCode})\n`);
    }
    return { code: res.exitCode, r, text };
  }
  const causes = (r: DiagReport): string[] => r.diagnosis.map((f) => `${f.severity}: ${f.cause}`);
  const until = async <T>(what: string, f: () => Promise<T>, ok: (v: T) => boolean, withinMs = 20_000): Promise<T> => {
    const deadline = Date.now() + withinMs;
    for (;;) {
      const v = await f();
      if (ok(v)) return v;
      if (Date.now() > deadline)
        throw new Error(`${what}: still ${JSON.stringify(v).slice(0, 3000)}\n${m.startAgent().log().slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 300));
    }
  };

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup, {
      prefix: 'dg',
      resyncSeconds: 1,
      agentConfig: (tb) => ({
        serviceCIDR: ['10.96.0.0/16'],
        services: { table: `${tb.id}_svc` },
        dns: { upstreams: ['127.0.0.1:19553'], upstreamTimeoutMs: 500, rateLimit: false },
      }),
    });
    for (const k of PODS) {
      const r = await m.addPod(k);
      if (r.exitCode !== 0) throw new Error(`endpoint ADD ${k}: ${r.stdout} ${r.stderr}`);
      await inNs(m.pods.get(k)!.netns, 'ip', ['route', 'add', '10.96.0.0/16', 'via', m.tb.gateway]);
    }
    // the runtime's cache of x/a's attachment (what a libcni runtime writes), for the CNI CHECK
    const list = {
      cniVersion: '1.1.0',
      name: `${m.tb.id}net`,
      plugins: [
        { ...m.bridgeConf(), cniVersion: undefined, name: undefined },
        { ...m.endpointConf(), args: { cni: { labels: [{ key: 'pod', value: 'a' }], containerPorts: containerPorts() } } },
      ],
    };
    const xa = m.pods.get('x/a')!;
    writeCache(
      path.join(m.tb.dir, 'cnicache'),
      cacheEntry({
        network: list.name,
        listBytes: JSON.stringify(list),
        containerId: xa.containerId,
        ifname: 'eth0',
        netns: xa.netns.path,
        args: [
          ['K8S_POD_NAMESPACE', 'x'],
          ['K8S_POD_NAME', 'a'],
        ],
        capabilityArgs: {},
        result: m.prevResultOf('x/a') as Record<string, unknown>,
      }),
    );
    // "outside": a netns behind a 1400-byte link, routed by the host netns
    outside = await makeNetns(cleanup, `cnits-${m.tb.id}-o`);
    const net = randomTransferNet();
    far = net.outside;
    const v = uid('dg');
    await sh('ip', [
      '-n',
      m.tb.host.name,
      'link',
      'add',
      `${v}a`,
      'mtu',
      '1400',
      'type',
      'veth',
      'peer',
      'name',
      `${v}b`,
      'mtu',
      '1400',
      'netns',
      outside.name,
    ]);
    await inNs(m.tb.host, 'ip', ['-batch', '-'], false, [`addr add ${net.host}/30 dev ${v}a`, `link set ${v}a up`, ''].join('\n'));
    await inNs(
      outside,
      'ip',
      ['-batch', '-'],
      false,
      [`addr add ${far}/30 dev ${v}b`, `link set ${v}b up`, 'link set lo up', `route add ${m.tb.subnet} via ${net.host}`, ''].join('\n'),
    );
    await inNs(m.pods.get('x/a')!.netns, 'ip', ['route', 'add', `${far}/32`, 'via', m.tb.gateway]);
    await inNs(m.tb.host, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.icmp_ratelimit=0']);
    m.startAgent();
    // the agent serves DNS on the gateway once its pass has seen the endpoints
    await until(
      'agent DNS',
      () => inNs(m.pods.get('x/a')!.netns, 'dig', [`@${m.tb.gateway}`, '+tries=1', '+time=1', 'x.svc.cluster.local', 'SOA'], true),
      (r) => /status: (NOERROR|NXDOMAIN)/.test(r.stdout),
      30_000,
    );
  }, 240_000);
  afterAll(() => cleanup.run(), 60_000);

  it('healthy path: complete report, no finding, exit 0 (with a capture kept as pcap)', async () => {
    const pcap = path.join(m.tb.dir, 'healthy.pcap');
    const { code, r } = await diag<ConnectivityReport>(
      ['connectivity', 'x/b', '--from', 'x/a', '--port', '80/tcp', '--capture', '2', '-w', pcap],
      'healthy',
    );
    expect(r.diagnosis).toEqual([]);
    expect(code).toBe(0);
    expect(r.source).toMatchObject({
      pod: 'x/a',
      ip: ip('x/a'),
      interface: { name: 'eth0', up: true, mtu: 1500 },
      hostInterface: { up: true },
    });
    expect(r.target).toMatchObject({ pod: 'x/b', ip: ip('x/b'), interface: { up: true } });
    expect(r.ping).toMatchObject({ sent: 3, received: 3, lossPercent: 0 });
    expect(r.ping!.rttAvgMs).toBeGreaterThan(0);
    expect(r.route).toMatchObject({ reached: true, pathMtu: 1500, error: null });
    expect(r.route!.hops.at(-1)).toMatchObject({ address: ip('x/b'), name: 'x/b' });
    expect(r.port).toMatchObject({ state: 'open', protocol: 'tcp', port: 80 });
    expect(r.policy).toMatchObject({ verdict: 'allow', flow: 'TCP/80' });
    expect(r.capture!.error).toBeNull();
    expect(r.capture!.interfaces.map((i) => i.of).sort()).toEqual(['x/a', 'x/b']);
    for (const side of r.capture!.interfaces) {
      expect(side.handshakesCompleted, JSON.stringify(r.capture)).toBeGreaterThanOrEqual(1);
      expect(side.synWithoutAnswer).toBe(0);
      expect(side.protocols.ICMP).toBeGreaterThanOrEqual(6);
    }
    expect(existsSync(pcap) && statSync(pcap).size > 100).toBe(true);
  }, 60_000);

  it('healthy path from the host (--from-host), ICMP only', async () => {
    const { code, r } = await diag<ConnectivityReport>(['connectivity', ip('x/b'), '--from-host']);
    expect(causes(r)).toEqual([]);
    expect(code).toBe(0);
    expect(r.source.label).toBe('host');
    expect(r.target.pod).toBe('x/b');
    expect(r.port).toBeNull();
    expect(r.ping!.received).toBe(3);
  }, 60_000);

  it('a NetworkPolicy drop: names the policy, the drop counter moved', async () => {
    const np: NetworkPolicy = {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'deny-web', namespace: 'x' },
      spec: {
        podSelector: { matchLabels: { pod: 'b' } },
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { pod: 'c' } } }] }],
      },
    } as NetworkPolicy;
    await m.apply(np as CniObject);
    try {
      const { code, r } = await until(
        'policy enforced',
        () => diag<ConnectivityReport>(['connectivity', 'x/b', '--from', 'x/a', '--port', '80/tcp']),
        (x) => x.r.port?.state === 'filtered',
      );
      await diag(['connectivity', 'x/b', '--from', 'x/a', '--port', '80/tcp'], 'policy-drop');
      expect(causes(r)).toEqual([
        'error: dropped by NetworkPolicy x/deny-web (ingress of x/b; isolated by it; no rule allows x/a on TCP/80)',
      ]);
      expect(code).toBe(1);
      expect(r.policy).toMatchObject({ verdict: 'deny', policy: 'NetworkPolicy x/deny-web', side: 'ingress', counter: 'default_deny_in' });
      expect(r.policy!.counterDelta).toBeGreaterThan(0);
      // diag endpoint of the isolated pod: the policy, its rule and the counters
      const ep = await diag<EndpointReport>(['endpoint', 'x/b', '--cache-dir', path.join(m.tb.dir, 'cnicache')], 'endpoint-policy');
      expect(ep.r.policy).toEqual([
        {
          direction: 'ingress',
          policy: 'NetworkPolicy x/deny-web',
          rules: ["rule 0: from pods pod=c of the policy's namespace, ports all"],
        },
      ]);
      expect(ep.r.counters.find((c) => c.name === 'default_deny_in')!.packets).toBeGreaterThan(0);
      expect(ep.r.check.result).toBe('skipped'); // no runtime cache entry for x/b
    } finally {
      await m.remove('NetworkPolicy', 'x', 'deny-web');
    }
    await until(
      'policy gone',
      () => diag<ConnectivityReport>(['connectivity', 'x/b', '--from', 'x/a', '--port', '80/tcp']),
      (x) => x.code === 0,
    );
  }, 90_000);

  it('a dead backend behind a service (diag service and diag connectivity svc/NAME)', async () => {
    await m.label('x/c', { pod: 'c', app: 'web' });
    const check = JSON.stringify({
      type: 'tcp',
      port: 19552,
      intervalSeconds: 1,
      timeoutSeconds: 0.5,
      unhealthyThreshold: 1,
      healthyThreshold: 1,
    });
    const svc: Service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'x', annotations: { 'health.cni-ts.dev/check': check } },
      spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 80, protocol: 'TCP' }] },
    } as Service;
    await m.apply(svc as CniObject);
    const s = await until(
      'backend marked unhealthy',
      () => diag<ServiceReport>(['service', 'web', '-n', 'x', '--from', 'x/a']),
      (x) => x.r.backends.length === 1 && !x.r.backends[0]!.healthy && x.r.vip[0]?.state === 'refused',
    );
    await diag(['service', 'web', '-n', 'x', '--from', 'x/a'], 'dead-backend');
    expect(causes(s.r)).toEqual(['error: no healthy backend behind svc x/web (1 failing health check)']);
    expect(s.code).toBe(1);
    expect(s.r.dns).toMatchObject({ rcode: 'NOERROR' });
    expect(s.r.backends[0]).toMatchObject({ address: ip('x/c'), pod: 'x/c', healthy: false });
    expect(s.r.backends[0]!.portTest!.state).toBe('open'); // the pod serves 80: only the health check fails
    const c = await diag<ConnectivityReport>(['connectivity', 'svc/web', '-n', 'x', '--from', 'x/a']);
    expect(causes(c.r)).toEqual(['error: no healthy backend behind svc x/web (1 failing health check)']);
    expect(c.code).toBe(1);
    expect(c.r.port).toMatchObject({ port: 80, state: 'refused' });
  }, 90_000);

  it('a container interface set down', async () => {
    await inNs(m.pods.get('y/a')!.netns, 'ip', ['link', 'set', 'eth0', 'down']);
    const { code, r } = await diag<ConnectivityReport>(['connectivity', 'y/a', '--from', 'x/a', '--port', '80/tcp'], 'interface-down');
    expect(causes(r)).toEqual(['error: eth0 of y/a is down']);
    expect(code).toBe(1);
    expect(r.ping).toMatchObject({ sent: 3, received: 0 });
  }, 60_000);

  it('a deleted route', async () => {
    await inNs(m.pods.get('y/b')!.netns, 'ip', ['route', 'del', m.tb.subnet, 'dev', 'eth0']);
    const { code, r } = await diag<ConnectivityReport>(['connectivity', 'x/b', '--from', 'y/b', '--port', '80/tcp'], 'no-route');
    expect(causes(r)).toEqual([`error: no route to ${ip('x/b')} in y/b`]);
    expect(code).toBe(1);
    expect(r.route!.error).toMatch(/unreachable/i);
    expect(r.port!.state).toBe('filtered'); // not "refused": nothing answered
  }, 60_000);

  it('an MTU mismatch: DF probes find a path MTU below the pod’s eth0 MTU', async () => {
    const { code, r } = await diag<ConnectivityReport>(['connectivity', far, '--from', 'x/a'], 'mtu');
    expect(causes(r)).toEqual(["error: path MTU 1400 but x/a's eth0 MTU 1500"]);
    expect(code).toBe(1);
    expect(r.route).toMatchObject({ pathMtu: 1400, reached: true });
    expect(r.ping!.received).toBe(3); // small packets pass: only the large ones do not
  }, 60_000);

  it('a name that does not exist: NXDOMAIN from the agent’s DNS', async () => {
    const { code, r } = await diag<ConnectivityReport>(['connectivity', 'nosuch.x.svc.cluster.local', '--from', 'x/a'], 'nxdomain');
    expect(causes(r)).toEqual(['error: NXDOMAIN for nosuch.x.svc.cluster.local']);
    expect(code).toBe(1);
    expect(r.dns).toMatchObject({ name: 'nosuch.x.svc.cluster.local', server: m.tb.gateway, rcode: 'NXDOMAIN', answers: [] });
  }, 60_000);

  it('a port with nothing listening', async () => {
    const { code, r } = await diag<ConnectivityReport>(['connectivity', 'x/b', '--from', 'x/a', '--port', '19551/tcp'], 'port-refused');
    expect(causes(r)).toEqual(['error: nothing listens on TCP/19551 of x/b']);
    expect(code).toBe(1);
    expect(r.port).toMatchObject({ state: 'refused', port: 19551 });
    const u = await diag<ConnectivityReport>(['connectivity', 'x/b', '--from', 'x/a', '--port', '19551/udp']);
    expect(causes(u.r)).toEqual(['error: nothing listens on UDP/19551 of x/b']);
    const open = await diag<ConnectivityReport>(['connectivity', 'x/b', '--from', 'x/a', '--port', '80/udp']);
    expect(open.r.port).toMatchObject({ state: 'open', protocol: 'udp' });
    expect(open.code).toBe(0);
  }, 60_000);

  it('diag endpoint: interfaces, routes, MTUs, the CNI CHECK from the runtime cache, policies, counters', async () => {
    const { code, r } = await diag<EndpointReport>(
      ['endpoint', 'x/a', '--cache-dir', path.join(m.tb.dir, 'cnicache'), '--cni-path', BIN],
      'endpoint',
    );
    expect(r.diagnosis).toEqual([]);
    expect(code).toBe(0);
    expect(r.check.result).toBe('ok');
    expect(r.interfaces.find((i) => i.name === 'eth0')).toMatchObject({ up: true, mtu: 1500 });
    expect(r.interfaces.find((i) => i.name === 'eth0')!.addresses).toContain(`${ip('x/a')}/24`);
    expect(r.routes.some((x) => x.dst === '10.96.0.0/16')).toBe(true);
    expect(r.hostInterface!.up).toBe(true);
  }, 60_000);

  it('usage errors exit 2', async () => {
    expect((await m.cnictl(['diag', 'connectivity'])).exitCode).toBe(2);
    expect((await m.cnictl(['diag', 'connectivity', 'x/b', '--port', '99999/tcp'])).exitCode).toBe(2);
    expect((await m.cnictl(['diag', 'nothing'])).exitCode).toBe(2);
  });
});
