/**
 * DNS through the node agent, end to end on the real kernel: pods x/a, x/b, x/c attached with
 * the built bridge + host-local + endpoint inside a test "host" netns, the built `cni-ts agent`
 * running there with a `dns` section (upstream: a dnsmasq in a third netns), services applied
 * with the built `cnictl`. Clients are `dig` and the libc resolver inside the pods' netns,
 * asking the gateway; traffic stays between the test's namespaces.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { CniObject } from '../shared/objects/types.ts';
import { askAgent, type DnsRecordsReport } from '../shared/agentapi.ts';
import { parseDig, type Dig } from './helpers/dig.ts';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { PolicyMatrix, type PodKey } from './helpers/policy-matrix.ts';
import { uid } from './helpers/run.ts';

const UP_HOST = '10.254.53.1';
const UP = '10.254.53.2';
const VIP = '10.96.7.10';

const svc = (name: string, spec: Record<string, unknown>): CniObject =>
  ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'x' }, spec }) as unknown as CniObject;

/** Poll `f` until `ok` holds (at most `withinMs`); returns the last value. */
async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, withinMs = 5000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await f();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('DNS served by the node agent to pods attached with bridge + host-local + endpoint', () => {
  const cleanup = new Cleanup();
  let m: PolicyMatrix;
  let up: TestNetns;
  let dnsmasq: ResultPromise;
  const ip = (k: PodKey): string => m.pods.get(k)!.ip;

  const dig = async (from: PodKey, args: string[], server = m.tb.gateway): Promise<Dig> => {
    const r = await inNs(
      m.pods.get(from)!.netns,
      'dig',
      [`@${server}`, '+tries=1', '+time=3', '+noall', '+comments', '+answer', '+authority', ...args],
      true,
    );
    return parseDig(r.stdout);
  };
  const cnictl = async (args: string[], input?: string): Promise<string> => {
    const r = await m.cnictl(args, input);
    if (r.exitCode !== 0) throw new Error(`cnictl ${args.join(' ')}: ${r.stdout} ${r.stderr}`);
    return r.stdout;
  };
  const apply = (...objs: CniObject[]): Promise<string> => cnictl(['apply', '-f', '-'], objs.map((o) => JSON.stringify(o)).join('\n---\n'));

  beforeAll(async () => {
    m = await PolicyMatrix.create(cleanup, {
      prefix: process.env.TEST_PREFIX ?? 'hw',
      agentConfig: () => ({ dns: { upstreams: [UP], upstreamTimeoutMs: 2000, rateLimit: false } }),
    });
    // the upstream resolver: dnsmasq in its own netns, linked to the host netns
    up = await makeNetns(cleanup, `cnits-${m.tb.id}-up`);
    const v = uid(process.env.TEST_PREFIX ?? 'hw');
    await sh('ip', ['-n', m.tb.host.name, 'link', 'add', `${v}a`, 'type', 'veth', 'peer', 'name', `${v}b`, 'netns', up.name]);
    await inNs(m.tb.host, 'ip', ['-batch', '-'], false, [`addr add ${UP_HOST}/24 dev ${v}a`, `link set ${v}a up`, ''].join('\n'));
    await inNs(up, 'ip', ['-batch', '-'], false, [`addr add ${UP}/24 dev ${v}b`, `link set ${v}b up`, 'link set lo up', ''].join('\n'));
    dnsmasq = execa(
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
      ],
      { reject: false },
    );
    cleanup.add(async () => {
      dnsmasq.kill('SIGTERM');
      await dnsmasq;
    });

    m.startAgent();
    for (const k of ['x/a', 'x/b', 'x/c'] as PodKey[]) {
      const r = await m.addPod(k, {
        serve: false,
        endpointConf: k === 'x/b' ? { runtimeConfig: { aliases: { [`${m.tb.id}net`]: ['b-alias'] } } } : {},
      });
      if (r.exitCode !== 0) throw new Error(`endpoint ADD ${k}: ${r.stdout} ${r.stderr}`);
    }
    await apply(
      svc('web', { clusterIP: VIP, clusterIPs: [VIP], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
      svc('db', {
        clusterIP: 'None',
        selector: { pod: 'a' },
        ports: [{ name: 'pg', port: 5432, targetPort: 'serve-80-tcp', protocol: 'TCP' }],
      }),
    );
    // the agent serves on the gateway once its pass has seen the endpoints
    const first = await until(
      () => dig('x/c', ['web.x.svc.cluster.local']),
      (d) => d.answer.length > 0,
      20_000,
    );
    if (!first.answer.length) throw new Error(`agent does not answer on ${m.tb.gateway}`);
  }, 120_000);

  afterAll(() => cleanup.run(), 60_000);

  it('ClusterIP service: A with TTL 300', async () => {
    const a = await dig('x/c', ['web.x.svc.cluster.local', 'A']);
    expect(a.status).toBe('NOERROR');
    expect(a.flags).toContain('aa');
    expect(a.answer).toEqual([{ name: 'web.x.svc.cluster.local.', ttl: 300, type: 'A', data: VIP }]);
  });

  it('headless service: the selected endpoints with TTL 30, SRV for the named port, PTR', async () => {
    const a = await dig('x/c', ['db.x.svc.cluster.local']);
    expect(a.answer).toEqual([{ name: 'db.x.svc.cluster.local.', ttl: 30, type: 'A', data: ip('x/a') }]);
    const host = ip('x/a').replace(/\./g, '-');
    const srv = await dig('x/c', ['_pg._tcp.db.x.svc.cluster.local', 'SRV']);
    expect(srv.answer.map((r) => r.data)).toEqual([`0 100 80 ${host}.db.x.svc.cluster.local.`]);
    expect((await dig('x/c', ['_http._tcp.web.x.svc.cluster.local', 'SRV'])).answer[0]?.data).toBe('0 100 80 web.x.svc.cluster.local.');
    expect((await dig('x/c', ['-x', VIP])).answer[0]?.data).toBe('web.x.svc.cluster.local.');
    expect((await dig('x/c', ['-x', ip('x/a')])).answer.map((r) => r.data)).toContain(`${host}.db.x.svc.cluster.local.`);
  });

  it('pods by container name and by alias on their network (TTL 5)', async () => {
    expect((await dig('x/c', ['-q', 'a', 'A'])).answer); // -q: "a" alone is a type to dig.toEqual([{ name: 'a.', ttl: 5, type: 'A', data: ip('x/a') }]);
    expect((await dig('x/c', ['b.dns.podman'])).answer[0]?.data).toBe(ip('x/b'));
    expect((await dig('x/a', ['b-alias'])).answer[0]?.data).toBe(ip('x/b'));
    expect((await dig('x/a', ['b-alias.dns.podman'])).answer[0]?.data).toBe(ip('x/b'));
    expect((await dig('x/a', ['nobody.dns.podman'])).status).toBe('NXDOMAIN');
  });

  it('forwards other names to the upstream dnsmasq', async () => {
    const r = await dig('x/c', ['up.test']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer[0]?.data).toBe('192.0.2.1');
  });

  it("libc resolver with the resolv.conf written from the endpoint result's dns", async () => {
    // the endpoint ADD result of x/c names the gateway, the search list and ndots
    const res = await m.endpoint('CHECK', 'x/c', m.prevResultOf('x/c'));
    expect(res.exitCode, res.stderr).toBe(0);
    const add = await m.plugin('endpoint', {
      command: 'ADD',
      containerId: m.pods.get('x/c')!.containerId,
      netns: m.pods.get('x/c')!.netns.path,
      args: 'K8S_POD_NAMESPACE=x;K8S_POD_NAME=c',
      config: {
        cniVersion: '1.1.0',
        name: `${m.tb.id}net`,
        ...m.endpointConf(),
        args: { cni: { labels: [{ key: 'pod', value: 'c' }] } },
        prevResult: m.prevResultOf('x/c'),
      },
    });
    expect(add.exitCode, add.stderr).toBe(0);
    const d = (add.json as { dns: { nameservers: string[]; search: string[]; options: string[] } }).dns;
    expect(d).toEqual({
      nameservers: [m.tb.gateway],
      search: ['x.svc.cluster.local', 'svc.cluster.local', 'cluster.local', 'dns.podman'],
      options: ['ndots:5'],
    });
    const ns = m.pods.get('x/c')!.netns.name;
    const etc = `/etc/netns/${ns}`;
    const created = !existsSync('/etc/netns');
    mkdirSync(etc, { recursive: true });
    cleanup.add(async () => {
      rmSync(etc, { recursive: true, force: true });
      if (created) await sh('rmdir', ['/etc/netns'], { allowFail: true });
    });
    writeFileSync(
      path.join(etc, 'resolv.conf'),
      `nameserver ${d.nameservers.join('\nnameserver ')}\nsearch ${d.search.join(' ')}\noptions ${d.options.join(' ')} attempts:2 timeout:3\n`,
    );
    const getent = async (name: string): Promise<string> =>
      (await sh('ip', ['netns', 'exec', ns, 'getent', 'ahostsv4', name], { allowFail: true })).stdout;
    expect(await getent('web')).toContain(VIP);
    expect(await getent('db')).toContain(ip('x/a'));
    expect(await getent('web.x.svc.cluster.local')).toContain(VIP);
    expect(await getent('a')).toContain(ip('x/a'));
    expect(await getent('up.test')).toContain('192.0.2.1');
    rmSync(etc, { recursive: true, force: true });
  });

  it('changes are served within a bounded wait: a new service, a deleted one, a new endpoint', async () => {
    await apply(svc('late', { clusterIP: '10.96.7.11', clusterIPs: ['10.96.7.11'] }));
    const got = await until(
      () => dig('x/c', ['late.x.svc.cluster.local']),
      (d) => d.answer.length > 0,
    );
    expect(got.answer[0]?.data).toBe('10.96.7.11');
    await cnictl(['delete', 'service', 'x/late']);
    expect(
      (
        await until(
          () => dig('x/c', ['late.x.svc.cluster.local']),
          (d) => d.status === 'NXDOMAIN',
        )
      ).status,
    ).toBe('NXDOMAIN');
    // the headless service follows its selector: x/b labelled pod=a joins it
    await cnictl(['label', 'endpoint', 'x/b', 'pod=a', '--overwrite']);
    const both = await until(
      () => dig('x/c', ['db.x.svc.cluster.local']),
      (d) => d.answer.length === 2,
    );
    expect(both.answer.map((r) => r.data).sort()).toEqual([ip('x/a'), ip('x/b')].sort());
    await cnictl(['label', 'endpoint', 'x/b', 'pod=b', '--overwrite']);
    expect(
      (
        await until(
          () => dig('x/c', ['db.x.svc.cluster.local']),
          (d) => d.answer.length === 1,
        )
      ).answer.length,
    ).toBe(1);
  });

  it('cnictl dns lookup and get dns ask the agent', async () => {
    const out = await cnictl(['dns', 'lookup', 'web.x.svc.cluster.local']);
    expect(out).toContain('NOERROR');
    expect(out).toMatch(new RegExp(`web\\.x\\.svc\\.cluster\\.local\\.\\s+A\\s+300\\s+${VIP.replace(/\./g, '\\.')}`));
    expect(await cnictl(['dns', 'lookup', 'nope.x.svc.cluster.local'])).toContain('NXDOMAIN');
    expect(await cnictl(['dns', 'lookup', 'up.test'])).toContain('forwarded');
    expect(await cnictl(['dns', 'lookup', VIP])).toContain('web.x.svc.cluster.local.');
    const srv = JSON.parse(await cnictl(['dns', 'lookup', '_pg._tcp.db.x.svc.cluster.local', 'SRV', '-o', 'json'])) as {
      answers: { type: string }[];
    };
    expect(srv.answers[0]?.type).toBe('SRV');
    const table = await cnictl(['get', 'dns']);
    expect(table).toMatch(/^NAME\s+TYPE\s+TTL\s+DATA/m);
    const all = JSON.parse(await cnictl(['get', 'dns', '-o', 'json'])) as DnsRecordsReport;
    expect(all.records).toContainEqual({ name: 'web.x.svc.cluster.local.', type: 'A', ttl: 300, data: VIP });
    expect(all.records).toContainEqual({ name: 'b-alias.', type: 'A', ttl: 5, data: ip('x/b'), network: `${m.tb.id}net` });
    expect(all.listeners).toContainEqual({ address: m.tb.gateway, port: 53, networks: [`${m.tb.id}net`] });
    // the agent's status API lists the DNS reconciler
    const st = await askAgent(path.join(m.tb.dir, 'agent.sock'), { type: 'status' });
    expect(st.ok && st.type === 'status' && st.status.reconcilers.find((r) => r.name === 'dns')?.state).toBe('ok');
  });

  it("listeners follow the networks' gateways: a second network's gateway is served while it has endpoints", async () => {
    const net2 = `${m.tb.id}n2`;
    const sub = m.tb.subnet.replace(/^10\.(\d+)\.(\d+)\.0\/24$/, (_, b: string, c: string) => `10.${b}.${(Number(c) + 1) % 250}`);
    const gw2 = `${sub}.1`;
    const pod = await m.tb.container();
    await inNs(pod, 'ip', ['link', 'set', 'lo', 'up']);
    const cid = `${m.tb.id}-n2`;
    const bridge = {
      cniVersion: '1.1.0',
      name: net2,
      type: 'bridge',
      bridge: `${m.tb.bridge}`.slice(0, 12) + 'n2',
      isGateway: true,
      ipMasq: false,
      ipam: { type: 'host-local', subnet: `${sub}.0/24`, dataDir: m.tb.dataDir },
    };
    const br = await m.plugin('bridge', { command: 'ADD', containerId: cid, netns: pod.path, config: bridge });
    expect(br.exitCode, br.stderr).toBe(0);
    cleanup.add(() => m.plugin('bridge', { command: 'DEL', containerId: cid, netns: pod.path, config: bridge }));
    const epConf = { cniVersion: '1.1.0', name: net2, ...m.endpointConf(), prevResult: br.json };
    const ep = await m.plugin('endpoint', {
      command: 'ADD',
      containerId: cid,
      netns: pod.path,
      args: 'K8S_POD_NAMESPACE=y;K8S_POD_NAME=other',
      config: epConf,
    });
    expect(ep.exitCode, ep.stderr).toBe(0);
    const listeners = async (): Promise<string[]> =>
      (JSON.parse(await cnictl(['get', 'dns', '-o', 'json'])) as DnsRecordsReport).listeners.map((l) => l.address);
    expect(await until(listeners, (l) => l.includes(gw2))).toContain(gw2);
    const r = parseDig(
      (await inNs(pod, 'dig', [`@${gw2}`, '+tries=1', '+time=3', '+noall', '+comments', '+answer', 'other'], true)).stdout,
    );
    expect(r.answer[0]?.data).toBe((br.json as { ips: { address: string }[] }).ips[0]!.address.split('/')[0]);
    // x's pods are not on this network: their names are not visible from its gateway
    expect(
      parseDig((await inNs(pod, 'dig', [`@${gw2}`, '+tries=1', '+time=3', '+noall', '+comments', '+answer', 'b-alias'], true)).stdout)
        .answer,
    ).toEqual([]);
    const del = await m.plugin('endpoint', {
      command: 'DEL',
      containerId: cid,
      netns: pod.path,
      args: 'K8S_POD_NAMESPACE=y;K8S_POD_NAME=other',
      config: { cniVersion: '1.1.0', name: net2, ...m.endpointConf() },
    });
    expect(del.exitCode, del.stderr).toBe(0);
    expect(await until(listeners, (l) => !l.includes(gw2))).not.toContain(gw2);
    expect(await listeners()).toContain(m.tb.gateway);
  });
});
