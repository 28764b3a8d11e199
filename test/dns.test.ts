/**
 * DNS through the kernel: the standalone server (agent/dns/standalone.ts, on the agent's Bun) in a "node" netns,
 * listening on the gateway address of a test network; clients (`dig`, the libc resolver with a
 * resolv.conf) in a "pod" netns; an upstream dnsmasq in a third netns. Packets stay between
 * these namespaces.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { ROOT, uid } from './helpers/run.ts';
import { resultDns } from '../shared/dns/result.ts';
import { parseDig, type Dig } from './helpers/dig.ts';

/** netns/link prefix; TEST_PREFIX lets a session sharing the machine use its own */
const PREFIX = process.env.TEST_PREFIX ?? 'hd';
/** the server runs on the Bun the agent's executable is built with (scripts/build.mjs), else on Node */
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const SERVER_RUNTIME = existsSync(BUN) ? [BUN] : [process.execPath, '--experimental-strip-types'];
const GW = '10.77.0.1';
const POD = '10.77.0.2';
const UP = '10.78.0.2';

describe('DNS server in a node namespace, queried from a pod namespace', () => {
  const cleanup = new Cleanup();
  let node: TestNetns;
  let pod: TestNetns;
  let up: TestNetns;
  let dir: string;
  let objectsFile: string;
  let server: ResultPromise;
  let dnsmasq: ResultPromise | undefined;
  let exited = false;
  let serverOut = '';

  const objects = (extra: unknown[] = []): unknown[] => [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: 'default' },
      spec: { clusterIPs: ['10.96.0.10', 'fd96::10'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { port: 81 }] },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'db', namespace: 'default' },
      spec: { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] },
    },
    {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'db-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'db' } },
      endpoints: [
        { addresses: ['10.77.0.5'], hostname: 'db-0' },
        { addresses: ['10.77.0.6'] },
        { addresses: ['10.77.0.7'], conditions: { ready: false } },
      ],
      ports: [{ name: 'pg', port: 5432 }],
    },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'big', namespace: 'default' }, spec: { clusterIP: 'None' } },
    {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'big-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'big' } },
      endpoints: Array.from({ length: 100 }, (_, i) => ({ addresses: [`10.80.0.${i + 1}`] })),
    },
    {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'pod1', namespace: 'default' },
      spec: {
        node: 'n1',
        network: 'hdnet',
        containerId: 'c1',
        ifname: 'eth0',
        ips: [`${POD}/24`],
        gateways: [`${GW}/24`],
        aliases: ['pod1-alias'],
      },
    },
    {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'elsewhere', namespace: 'default' },
      spec: { node: 'n2', network: 'hdother', containerId: 'c2', ifname: 'eth0', ips: ['10.81.0.2/24'] },
    },
    ...extra,
  ];

  const dig = async (args: string[]): Promise<Dig> => {
    const r = await inNs(pod, 'dig', [`@${GW}`, '+tries=1', '+time=8', '+noall', '+comments', '+answer', '+authority', ...args], true);
    return parseDig(r.stdout);
  };

  beforeAll(async () => {
    node = await makeNetns(cleanup, PREFIX);
    pod = await makeNetns(cleanup, PREFIX);
    up = await makeNetns(cleanup, PREFIX);
    const v = uid('hd');
    await sh('ip', ['-n', node.name, 'link', 'add', `${v}a`, 'type', 'veth', 'peer', 'name', `${v}b`, 'netns', pod.name]);
    await sh('ip', ['-n', node.name, 'link', 'add', `${v}c`, 'type', 'veth', 'peer', 'name', `${v}d`, 'netns', up.name]);
    await inNs(
      node,
      'ip',
      ['-batch', '-'],
      false,
      [
        `addr add ${GW}/24 dev ${v}a`,
        `addr add 10.78.0.1/24 dev ${v}c`,
        `link set ${v}a up`,
        `link set ${v}c up`,
        'link set lo up',
        '',
      ].join('\n'),
    );
    await inNs(pod, 'ip', ['-batch', '-'], false, [`addr add ${POD}/24 dev ${v}b`, `link set ${v}b up`, 'link set lo up', ''].join('\n'));
    await inNs(up, 'ip', ['-batch', '-'], false, [`addr add ${UP}/24 dev ${v}d`, `link set ${v}d up`, 'link set lo up', ''].join('\n'));

    dir = `/tmp/${v}`;
    mkdirSync(dir, { recursive: true });
    cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
    objectsFile = path.join(dir, 'objects.json');
    writeFileSync(objectsFile, JSON.stringify(objects()));
    writeFileSync(path.join(dir, 'agent.json'), JSON.stringify({ node: 'n1', dns: { upstreams: [UP], upstreamTimeoutMs: 3000 } }));

    dnsmasq = startDnsmasq();
    server = execa(
      'ip',
      [
        'netns',
        'exec',
        node.name,
        ...SERVER_RUNTIME,
        path.join(ROOT, 'agent/dns/standalone.ts'),
        '--objects',
        objectsFile,
        '--config',
        path.join(dir, 'agent.json'),
      ],
      {
        reject: false,
        buffer: false,
      },
    );
    cleanup.add(async () => {
      server.kill('SIGTERM');
      await server;
    });
    await new Promise<void>((resolve, reject) => {
      server.stdout!.on('data', (d: Buffer) => {
        serverOut += d.toString();
        if (serverOut.includes('ready')) resolve();
      });
      server.stderr!.on('data', (d: Buffer) => process.stderr.write(`dns server: ${d}`));
      void server.then((r) => {
        exited = true;
        reject(new Error(`server exited: ${r.exitCode} ${serverOut}`));
      });
    });
    // dnsmasq ready
    for (let i = 0; i < 50; i++) {
      const r = await inNs(node, 'dig', [`@${UP}`, '+tries=1', '+time=1', '+short', 'up.test'], true);
      if (r.stdout.includes('192.0.2.1')) break;
      await new Promise((r2) => setTimeout(r2, 100));
    }
  });

  function startDnsmasq(): ResultPromise {
    const p = execa(
      'ip',
      [
        'netns',
        'exec',
        up.name,
        'dnsmasq',
        '--no-daemon',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--address=/up.test/192.0.2.1',
        `--listen-address=${UP}`,
        '--bind-interfaces',
        '--port=53',
        '--local-ttl=300',
      ],
      {
        reject: false,
      },
    );
    cleanup.add(async () => {
      p.kill('SIGTERM');
      await p;
    });
    return p;
  }

  afterAll(async () => {
    await cleanup.run();
  });

  it('ClusterIP service: A and AAAA with TTL 300, over UDP and TCP', async () => {
    const a = await dig(['web.default.svc.cluster.local', 'A']);
    expect(a.status).toBe('NOERROR');
    expect(a.flags).toContain('aa');
    expect(a.answer).toEqual([{ name: 'web.default.svc.cluster.local.', ttl: 300, type: 'A', data: '10.96.0.10' }]);
    expect((await dig(['web.default.svc.cluster.local', 'AAAA'])).answer[0].data).toBe('fd96::10');
    const t = await dig(['+tcp', 'web.default.svc.cluster.local', 'A']);
    expect(t.answer[0].data).toBe('10.96.0.10');
  });

  it('headless: ready endpoints with TTL 30, hostnames, SRV for named ports, PTR', async () => {
    const a = await dig(['db.default.svc.cluster.local']);
    expect(a.answer.map((r) => r.data).sort()).toEqual(['10.77.0.5', '10.77.0.6']);
    expect(a.answer[0].ttl).toBe(30);
    expect((await dig(['db-0.db.default.svc.cluster.local'])).answer[0].data).toBe('10.77.0.5');
    const srv = await dig(['_pg._tcp.db.default.svc.cluster.local', 'SRV']);
    expect(srv.answer.map((r) => r.data).sort()).toEqual([
      '0 50 5432 10-77-0-6.db.default.svc.cluster.local.',
      '0 50 5432 db-0.db.default.svc.cluster.local.',
    ]);
    expect((await dig(['_http._tcp.web.default.svc.cluster.local', 'SRV'])).answer[0].data).toBe('0 100 80 web.default.svc.cluster.local.');
    expect((await dig(['-x', '10.96.0.10'])).answer[0].data).toBe('web.default.svc.cluster.local.');
    expect((await dig(['-x', '10.77.0.5'])).answer[0].data).toBe('db-0.db.default.svc.cluster.local.');
    expect((await dig(['-x', POD])).answer[0].data).toBe('pod1.dns.podman.');
  });

  it('NXDOMAIN and NODATA carry the SOA', async () => {
    const nx = await dig(['nope.default.svc.cluster.local']);
    expect(nx.status).toBe('NXDOMAIN');
    expect(nx.authority[0]).toEqual({ name: 'cluster.local.', type: 'SOA' });
    const nodata = await dig(['web.default.svc.cluster.local', 'MX']);
    expect(nodata.status).toBe('NOERROR');
    expect(nodata.answer).toEqual([]);
    expect(nodata.authority[0].type).toBe('SOA');
  });

  it("container names and aliases on their network, TTL 5; another network's names are not served here", async () => {
    const a = await dig(['pod1']);
    expect(a.answer).toEqual([{ name: 'pod1.', ttl: 5, type: 'A', data: POD }]);
    expect((await dig(['pod1-alias.dns.podman'])).answer[0].data).toBe(POD);
    const other = await dig(['elsewhere.dns.podman']);
    expect(other.status).toBe('NXDOMAIN');
  });

  it('a large answer is truncated over UDP and complete over TCP (dig falls back by itself)', async () => {
    const udp = await dig(['+ignore', 'big.default.svc.cluster.local']);
    expect(udp.flags).toContain('tc');
    expect(udp.answer).toEqual([]);
    const fallback = await dig(['big.default.svc.cluster.local']);
    expect(fallback.answer).toHaveLength(100);
  });

  it("libc resolver with the result's resolv.conf: search list, container names, forwarded names", async () => {
    const d = resultDns('default', 'cluster.local', `${GW}/24`);
    const etc = `/etc/netns/${pod.name}`;
    const created = !existsSync('/etc/netns');
    mkdirSync(etc, { recursive: true });
    cleanup.add(async () => {
      rmSync(etc, { recursive: true, force: true });
      if (created) await sh('rmdir', ['/etc/netns'], { allowFail: true });
    });
    writeFileSync(
      path.join(etc, 'resolv.conf'),
      `nameserver ${d.nameservers[0]}\nsearch ${d.search.join(' ')}\noptions ${d.options.join(' ')} attempts:1 timeout:5\n`,
    );
    const getent = async (name: string): Promise<string> =>
      (await sh('ip', ['netns', 'exec', pod.name, 'getent', 'ahostsv4', name], { allowFail: true })).stdout;
    expect(await getent('web')).toContain('10.96.0.10');
    expect(await getent('db.default')).toMatch(/10\.77\.0\.[56]/);
    expect(await getent('pod1')).toContain(POD);
    expect(await getent('up.test')).toContain('192.0.2.1');
  });

  it('forwards to the upstream, serves from cache when it is gone, and a dead upstream never stalls our names', async () => {
    expect((await dig(['up.test'])).answer[0].data).toBe('192.0.2.1');
    expect((await dig(['sub.up.test'])).answer[0].data).toBe('192.0.2.1');
    dnsmasq!.kill('SIGTERM');
    await dnsmasq;
    const cached = await dig(['up.test']);
    expect(cached.answer[0].data).toBe('192.0.2.1');
    expect(cached.answer[0].ttl).toBeLessThanOrEqual(300);
    // an uncached name now waits for the upstream timeout (3 s) ...
    let settled = false;
    const slow = dig(['never-cached.up.test']).then((r) => {
      settled = true;
      return r;
    });
    // ... while our own names and walking the search list keep answering at once
    expect((await dig(['web.default.svc.cluster.local'])).answer[0].data).toBe('10.96.0.10');
    expect((await dig(['up.test.default.svc.cluster.local'])).status).toBe('NXDOMAIN');
    expect(settled).toBe(false);
    expect((await slow).status).toBe('SERVFAIL');
  });

  it("serves a changed object file (the agent's store watch) without a restart", async () => {
    writeFileSync(
      objectsFile,
      JSON.stringify(
        objects([
          { apiVersion: 'v1', kind: 'Service', metadata: { name: 'late', namespace: 'default' }, spec: { clusterIP: '10.96.0.99' } },
        ]),
      ),
    );
    let got = '';
    for (let i = 0; i < 50 && !got; i++) {
      got = (await dig(['late.default.svc.cluster.local'])).answer[0]?.data ?? '';
      if (!got) await new Promise((r) => setTimeout(r, 100));
    }
    expect(got).toBe('10.96.0.99');
  });

  it('survives a hostile-input sweep over UDP and TCP and still answers', async () => {
    const r = await execa(
      'ip',
      [
        'netns',
        'exec',
        pod.name,
        process.execPath,
        '--experimental-strip-types',
        path.join(ROOT, 'test/helpers/dns-fuzz.ts'),
        GW,
        '53',
        '3000',
        '200',
      ],
      { reject: false, timeout: 50_000 },
    );
    expect(r.stdout).toMatch(/^sent 3000 200/);
    expect(exited).toBe(false);
    const a = await dig(['web.default.svc.cluster.local']);
    expect(a.answer[0].data).toBe('10.96.0.10');
    expect((await dig(['+tcp', 'web.default.svc.cluster.local'])).answer[0].data).toBe('10.96.0.10');
    // the server's counters (SIGUSR1 prints them): the sweep was answered, not ignored
    const before = serverOut.length;
    server.kill('SIGUSR1');
    let line = '';
    for (let i = 0; i < 50 && !line; i++) {
      line =
        serverOut
          .slice(before)
          .split('\n')
          .find((l) => l.startsWith('{')) ?? '';
      if (!line) await new Promise((r) => setTimeout(r, 50));
    }
    const m = JSON.parse(line) as { responses: Record<string, number>; dropped: Record<string, number> };
    expect(m.responses.FORMERR).toBeGreaterThan(0);
    expect(m.responses.NOTIMP).toBeGreaterThan(0);
    expect(m.responses.REFUSED).toBeGreaterThan(0);
    expect(m.dropped.malformed + m.dropped.notQuery).toBeGreaterThan(0);
  });
});
