/**
 * DNS: the zone (pure records) and the server's answers in-process (server.query), with a fake
 * upstream on loopback for forwarding, caching and timeouts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import dnsPacket from 'dns-packet';
import { buildZone, lookup, parseReverse, reverseName, type ZoneObjects } from '../shared/dns/records.ts';
import { resultDns } from '../shared/dns/result.ts';
import { DnsServer, cacheTtl } from '../agent/dns/server.ts';
import { AnswerCache } from '../agent/dns/cache.ts';
import { parseHostPort, resolvConfNameservers } from '../agent/dns/upstream.ts';
import { listenSpecs, objectsFromJson, startDns } from '../agent/dns/index.ts';
import type { Endpoint, EndpointSlice, Service } from '../shared/objects/types.ts';
import { parseIP } from '../shared/ipnet.ts';
import { hostile } from './helpers/dns-fuzz.ts';
import { testPort } from './helpers/run.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** the Bun the agent's executable is built with (scripts/build.mjs): the server's UDP path there is Bun.udpSocket */
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');

const svc = (
  name: string,
  spec: Partial<Service['spec']> & Record<string, unknown>,
  ns = 'default',
  extra: Partial<Service['metadata']> = {},
): Service => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: ns, ...extra },
  spec: spec as Service['spec'],
});
const slice = (svcName: string, endpoints: EndpointSlice['endpoints'], ports?: EndpointSlice['ports'], ns = 'default'): EndpointSlice => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'EndpointSlice',
  metadata: { name: `${svcName}-x`, namespace: ns, labels: { 'kubernetes.io/service-name': svcName } },
  endpoints,
  ports,
});
const ep = (
  name: string,
  network: string,
  ips: string[],
  extra: Partial<Endpoint['spec']> = {},
  labels?: Record<string, string>,
  ns = 'default',
): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { name, namespace: ns, labels },
  spec: { node: 'n1', network, containerId: `${name}-id`, ifname: 'eth0', ips, ...extra },
});

const objects: ZoneObjects = {
  namespaces: [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'empty' } },
  ],
  services: [
    svc('web', {
      clusterIPs: ['10.96.0.10', 'fd96::10'],
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }, { port: 81 }, { name: 'dns', port: 53, protocol: 'UDP' }],
    }),
    svc('db', { clusterIP: 'None', ports: [{ name: 'pg', port: 5432 }] }),
    svc('gone', { clusterIP: 'None' }),
    svc('sel', { clusterIP: 'None', selector: { app: 'sel' }, ports: [{ name: 'web', port: 80, targetPort: 'http' }] }),
    svc('pending', { ports: [{ name: 'x', port: 1 }] }),
    svc('ext', { type: 'ExternalName', externalName: 'www.example.org' }),
    svc('slow', { clusterIP: 'None' }, 'default', { annotations: { 'service.alpha.kubernetes.io/tolerate-unready-endpoints': 'true' } }),
  ],
  endpointSlices: [
    slice(
      'db',
      [
        { addresses: ['10.1.0.5'], hostname: 'db-0' },
        { addresses: ['10.1.0.6'] },
        { addresses: ['10.1.0.7'], conditions: { ready: false } },
        { addresses: ['fd01::8'], conditions: { ready: true } },
      ],
      [{ name: 'pg', port: 5432 }, { port: 9 }],
    ),
    slice('gone', [{ addresses: ['10.1.0.20'], conditions: { ready: false } }]),
    slice('slow', [{ addresses: ['10.1.0.21'], conditions: { ready: false } }]),
  ],
  endpoints: [
    ep('app1', 'net1', ['10.1.0.9/24', 'fd00::9/64'], { aliases: ['appalias', 'Bad_Name!', 'a'.repeat(64)], gateways: ['10.1.0.1/24'] }),
    ep('app2', 'net2', ['10.2.0.9/24'], { gateways: ['10.2.0.1'] }),
    ep('s1', 'net1', ['10.1.0.30/24'], { ports: [{ name: 'http', containerPort: 8080 }] }, { app: 'sel' }),
    ep('other-node', 'net3', ['10.3.0.9/24'], { node: 'n2', gateways: ['10.3.0.1'] }),
    ep('remote1', 'net1', ['10.1.1.9/24'], { node: 'n2', gateways: ['10.1.1.1'] }),
  ],
};

const zone = buildZone(objects, { serial: 42, serviceCIDRs: ['10.96.0.0/16'] });
const data = (name: string, type = 'A', view = {}): string[] =>
  (lookup(zone, name, type, view)?.answers ?? []).map((r) => (typeof r.data === 'string' ? r.data : JSON.stringify(r.data))).sort();

describe('zone records (Kubernetes DNS spec)', () => {
  it('ClusterIP service: A and AAAA of the VIPs, TTL 300, PTR back, case-insensitive', () => {
    expect(data('web.default.svc.cluster.local')).toEqual(['10.96.0.10']);
    expect(data('WEB.Default.svc.cluster.local.', 'AAAA')).toEqual(['fd96::10']);
    expect(lookup(zone, 'web.default.svc.cluster.local', 'A')!.answers[0].ttl).toBe(300);
    expect(data('10.0.96.10.in-addr.arpa', 'PTR')).toEqual(['web.default.svc.cluster.local']);
    expect(data(reverseName(parseIP('fd96::10')!), 'PTR')).toEqual(['web.default.svc.cluster.local']);
  });

  it('SRV only for named ports; ClusterIP target is the service name, with its address as additional', () => {
    const a = lookup(zone, '_http._tcp.web.default.svc.cluster.local', 'SRV')!;
    expect(a.answers.map((r) => r.data)).toEqual([{ priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' }]);
    expect(a.additionals.map((r) => r.data).sort()).toEqual(['10.96.0.10', 'fd96::10']);
    expect(data('_dns._udp.web.default.svc.cluster.local', 'SRV')).toHaveLength(1);
    expect(lookup(zone, '_81._tcp.web.default.svc.cluster.local', 'SRV')!.rcode).toBe('NXDOMAIN');
    // `_tcp.<svc>` is an empty non-terminal: NOERROR, no data
    expect(lookup(zone, '_tcp.web.default.svc.cluster.local', 'SRV')).toMatchObject({ rcode: 'NOERROR', answers: [] });
  });

  it('headless: ready endpoints only, TTL 30, hostnames, SRV per endpoint and named port, PTR to the hostname', () => {
    expect(data('db.default.svc.cluster.local')).toEqual(['10.1.0.5', '10.1.0.6']);
    expect(data('db.default.svc.cluster.local', 'AAAA')).toEqual(['fd01::8']);
    expect(lookup(zone, 'db.default.svc.cluster.local', 'A')!.answers[0].ttl).toBe(30);
    expect(data('db-0.db.default.svc.cluster.local')).toEqual(['10.1.0.5']);
    expect(data('10-1-0-6.db.default.svc.cluster.local')).toEqual(['10.1.0.6']);
    expect(lookup(zone, '10-1-0-7.db.default.svc.cluster.local', 'A')!.rcode).toBe('NXDOMAIN');
    const srv = lookup(zone, '_pg._tcp.db.default.svc.cluster.local', 'SRV')!;
    expect(srv.answers.map((r) => (r.data as { target: string }).target).sort()).toEqual([
      '10-1-0-6.db.default.svc.cluster.local',
      'db-0.db.default.svc.cluster.local',
      'fd01--8.db.default.svc.cluster.local',
    ]);
    expect(srv.additionals.length).toBe(3);
    expect(data('5.0.1.10.in-addr.arpa', 'PTR')).toContain('db-0.db.default.svc.cluster.local');
  });

  it('headless with no ready endpoint: NXDOMAIN (and its SRV names too); tolerate-unready serves them', () => {
    expect(lookup(zone, 'gone.default.svc.cluster.local', 'A')!.rcode).toBe('NXDOMAIN');
    expect(data('slow.default.svc.cluster.local')).toEqual(['10.1.0.21']);
  });

  it('headless without slices: the Endpoint objects its selector picks, named target ports resolved on the pod', () => {
    expect(data('sel.default.svc.cluster.local')).toEqual(['10.1.0.30']);
    expect(lookup(zone, '_web._tcp.sel.default.svc.cluster.local', 'SRV')!.answers.map((r) => (r.data as { port: number }).port)).toEqual([
      8080,
    ]);
  });

  it('unhealthy backends are not served (set or predicate), and NXDOMAIN when none is left', () => {
    const z1 = buildZone(objects, { unhealthy: new Set(['10.1.0.5']) });
    expect(lookup(z1, 'db.default.svc.cluster.local', 'A')!.answers.map((r) => r.data)).toEqual(['10.1.0.6']);
    const z2 = buildZone(objects, { unhealthy: (_a, s) => s.name === 'db' });
    expect(lookup(z2, 'db.default.svc.cluster.local', 'A')!.rcode).toBe('NXDOMAIN');
    expect(lookup(z2, 'web.default.svc.cluster.local', 'A')!.rcode).toBe('NOERROR');
  });

  it('NODATA (NOERROR + SOA) for a name with other types, NXDOMAIN + SOA for none, empty non-terminals exist', () => {
    const nodata = lookup(zone, 'web.default.svc.cluster.local', 'MX')!;
    expect(nodata).toMatchObject({ rcode: 'NOERROR', answers: [] });
    expect(nodata.authority[0]).toMatchObject({ name: 'cluster.local', type: 'SOA', ttl: 5, data: { serial: 42, minimum: 5 } });
    const nx = lookup(zone, 'nope.default.svc.cluster.local', 'A')!;
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.authority[0].type).toBe('SOA');
    for (const ent of ['default.svc.cluster.local', 'empty.svc.cluster.local', 'svc.cluster.local', 'default.pod.cluster.local']) {
      expect(lookup(zone, ent, 'A'), ent).toMatchObject({ rcode: 'NOERROR', answers: [] });
    }
    expect(lookup(zone, 'cluster.local', 'SOA')!.answers[0].type).toBe('SOA');
    expect(lookup(zone, 'pending.default.svc.cluster.local', 'A')).toMatchObject({ rcode: 'NOERROR', answers: [] });
  });

  it('search-list walking names (ndots:5) are NXDOMAIN from the zone, never forwarded', () => {
    for (const n of ['www.example.com.default.svc.cluster.local', 'www.example.com.svc.cluster.local', 'www.example.com.cluster.local']) {
      expect(lookup(zone, n, 'A')?.rcode, n).toBe('NXDOMAIN');
    }
    expect(lookup(zone, 'www.example.com', 'A')).toBeNull();
  });

  it('ExternalName: CNAME; pod A records a-b-c-d.<ns>.pod; dns-version TXT', () => {
    expect(lookup(zone, 'ext.default.svc.cluster.local', 'A')!.answers).toMatchObject([{ type: 'CNAME', data: 'www.example.org' }]);
    expect(data('10-2-3-4.default.pod.cluster.local')).toEqual(['10.2.3.4']);
    expect(lookup(zone, '10-2-3-4.default.pod.cluster.local', 'A')!.answers[0].ttl).toBe(5);
    expect(data('dns-version.cluster.local', 'TXT')).toEqual(['1.0.1']);
  });

  it('container names and aliases: <name> and <name>.<network domain>, only on their network', () => {
    expect(data('app1')).toEqual(['10.1.0.9']);
    expect(data('appalias.dns.podman', 'AAAA')).toEqual(['fd00::9']);
    expect(lookup(zone, 'app1', 'A')!.answers[0].ttl).toBe(5);
    expect(data('app1', 'A', { networks: ['net1'] })).toEqual(['10.1.0.9']);
    expect(lookup(zone, 'app1', 'A', { networks: ['net2'] })).toBeNull();
    expect(lookup(zone, 'app1.dns.podman', 'A', { networks: ['net2'] })!.rcode).toBe('NXDOMAIN');
    expect(lookup(zone, 'bad_name!', 'A')).toBeNull();
    // a pod of the same network on another host (overlay) is visible too
    expect(data('remote1.dns.podman', 'A', { networks: ['net1'] })).toEqual(['10.1.1.9']);
    expect(data('9.0.1.10.in-addr.arpa', 'PTR')).toEqual(['app1.dns.podman']);
    const z = buildZone(objects, { networkDomains: { net1: 'net1.internal' }, defaultNetworkDomain: '' });
    expect(lookup(z, 'appalias.net1.internal', 'A')!.answers[0].data).toBe('10.1.0.9');
    expect(lookup(z, 'app2.dns.podman', 'A')).toBeNull();
    expect(lookup(z, 'app2', 'A')!.answers[0].data).toBe('10.2.0.9');
  });

  it('reverse names: ours inside our ranges (NXDOMAIN for unknown hosts there), others forwarded', () => {
    expect(lookup(zone, '99.0.1.10.in-addr.arpa', 'PTR')!.rcode).toBe('NXDOMAIN');
    expect(lookup(zone, '99.0.1.10.in-addr.arpa', 'PTR')!.authority[0].name).toBe('0.1.10.in-addr.arpa');
    expect(lookup(zone, '1.2.96.10.in-addr.arpa', 'PTR')!.rcode).toBe('NXDOMAIN');
    expect(lookup(zone, '8.8.8.8.in-addr.arpa', 'PTR')).toBeNull();
    expect(parseReverse('5.0.1.10.in-addr.arpa')).toMatchObject({ family: 4, prefix: 32 });
    expect(parseReverse('300.1.10.in-addr.arpa')).toBeNull();
  });

  it('options: cluster domain and TTLs', () => {
    const z = buildZone(objects, { clusterDomain: 'Corp.Example.', ttl: { service: 60, headless: 7, container: 0 } });
    expect(lookup(z, 'web.default.svc.corp.example', 'A')!.answers[0].ttl).toBe(60);
    expect(lookup(z, 'db.default.svc.corp.example', 'A')!.answers[0].ttl).toBe(7);
    expect(lookup(z, 'app1', 'A')!.answers[0].ttl).toBe(0);
    expect(lookup(z, 'web.default.svc.cluster.local', 'A')).toBeNull();
  });

  it('resultDns: nameserver, Kubernetes search list, ndots:5', () => {
    expect(resultDns('team-a', undefined, '10.1.0.1/24')).toEqual({
      nameservers: ['10.1.0.1'],
      search: ['team-a.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      options: ['ndots:5'],
    });
  });

  it("listen addresses: gateways of this node's endpoints (with their networks) and dns.listen", () => {
    expect(listenSpecs({ node: 'n1', dns: { listen: ['127.0.0.1:5353'] } }, objects)).toEqual([
      { address: '10.1.0.1', port: 53, networks: ['net1'] },
      { address: '10.2.0.1', port: 53, networks: ['net2'] },
      { address: '127.0.0.1', port: 5353 },
    ]);
    expect(parseHostPort('[fd00::1]:5353')).toEqual({ host: 'fd00::1', port: 5353 });
    expect(parseHostPort('nope')).toBeNull();
    expect(resolvConfNameservers('# x\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a\n')).toEqual([
      { host: '10.0.0.2', port: 53 },
      { host: 'fe80::1', port: 53 },
    ]);
    expect(objectsFromJson(JSON.stringify({ items: [objects.services![0]] })).services).toHaveLength(1);
  });
});

// ---------------------------------------------------------------- server, in-process

type Reply = Omit<dnsPacket.DecodedPacket, 'answers'> & {
  rcode: string;
  flag_tc: boolean;
  flag_aa: boolean;
  answers?: { name: string; type: string; ttl: number; data: unknown }[];
};
const q = (name: string, type = 'A', extra: Record<string, unknown> = {}): Buffer =>
  dnsPacket.encode({
    id: 4242,
    type: 'query',
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    ...extra,
  } as dnsPacket.Packet);
const edns = (size: number): Record<string, unknown> => ({
  additionals: [{ type: 'OPT', name: '.', udpPayloadSize: size, flags: 0, options: [] }],
});
const decode = (b: Buffer | null): Reply => dnsPacket.decode(b!) as unknown as Reply;

interface FakeUpstream {
  port: number;
  seen: string[];
  close(): Promise<void>;
}
/** A resolver on 127.0.0.1: `answer` builds the reply (null: stay silent); TCP too when `tcp`. */
async function fakeUpstream(
  answer: (q: dnsPacket.Question, transport: 'udp' | 'tcp') => Partial<dnsPacket.Packet> | null,
  tcp = false,
): Promise<FakeUpstream> {
  const seen: string[] = [];
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const port = (sock.address() as net.AddressInfo).port;
  const reply = (msg: Buffer, transport: 'udp' | 'tcp'): Buffer | null => {
    const d = dnsPacket.decode(msg);
    seen.push(`${transport}:${d.questions![0].name}/${d.questions![0].type}`);
    const a = answer(d.questions![0], transport);
    if (!a) return null;
    return dnsPacket.encode({
      id: d.id,
      type: 'response',
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: d.questions,
      ...a,
    } as dnsPacket.Packet);
  };
  sock.on('message', (m, r) => {
    const out = reply(m, 'udp');
    if (out) sock.send(out, r.port, r.address);
  });
  let srv: net.Server | undefined;
  if (tcp) {
    srv = net.createServer((c) => {
      c.on('data', (d) => {
        const out = reply(d.subarray(2), 'tcp');
        if (!out) return;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        c.end(Buffer.concat([len, out]));
      });
      c.on('error', () => {});
    });
    await new Promise<void>((r) => srv!.listen(port, '127.0.0.1', () => r()));
  }
  return {
    port,
    seen,
    close: async () => {
      try {
        sock.close();
      } catch {}
      if (srv) await new Promise<void>((r) => srv!.close(() => r()));
    },
  };
}

describe('DNS server answers (in-process)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  const server = (opts: ConstructorParameters<typeof DnsServer>[0] = {}): DnsServer => {
    const s = new DnsServer({ zone, rateLimit: false, ...opts });
    closers.push(() => s.close());
    return s;
  };

  it('answers our zone authoritatively, echoing ID, RD and the question', async () => {
    const s = server();
    const r = decode(await s.query(q('Web.Default.svc.cluster.local')));
    expect(r).toMatchObject({ id: 4242, rcode: 'NOERROR', flag_aa: true, flag_rd: true, flag_ra: true });
    expect(r.questions![0].name).toBe('Web.Default.svc.cluster.local');
    expect(r.answers![0]).toMatchObject({ type: 'A', ttl: 300, data: '10.96.0.10' });
    // the second time from the encoded-answer cache, with the new ID
    const again = Buffer.from(q('Web.Default.svc.cluster.local'));
    again.writeUInt16BE(7, 0);
    expect(decode(await s.query(again))).toMatchObject({ id: 7, rcode: 'NOERROR' });
    const nx = decode(await s.query(q('x.default.svc.cluster.local')));
    expect(nx.rcode).toBe('NXDOMAIN');
    expect(nx.authorities![0].type).toBe('SOA');
    expect(s.metrics.responses.NXDOMAIN).toBe(0); // counted by the transports, not query()
  });

  it('hostile or unsupported queries: FORMERR, NOTIMP, REFUSED, or dropped', async () => {
    const s = server();
    expect(await s.query(Buffer.from([1, 2, 3]))).toBeNull();
    const garbage = Buffer.alloc(40, 0xff);
    garbage.writeUInt16BE(0x0100, 2);
    expect(decode(await s.query(garbage)).rcode).toBe('FORMERR');
    // compression loop: the question name points at itself
    const loop = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    expect(decode(await s.query(loop)).rcode).toBe('FORMERR');
    // oversized name (> 255)
    const long = Buffer.concat([
      Buffer.from([0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
      ...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([63]), Buffer.alloc(63, 97)])),
      Buffer.from([0, 0, 1, 0, 1]),
    ]);
    expect(decode(await s.query(long)).rcode).toBe('FORMERR');
    const two = dnsPacket.encode({
      id: 1,
      type: 'query',
      questions: [
        { name: 'a', type: 'A' },
        { name: 'b', type: 'A' },
      ],
    });
    expect(decode(await s.query(two)).rcode).toBe('FORMERR');
    const chaos = dnsPacket.encode({ id: 1, type: 'query', questions: [{ name: 'version.bind', type: 'TXT', class: 'CH' }] });
    expect(decode(await s.query(chaos)).rcode).toBe('REFUSED');
    expect(decode(await s.query(q('cluster.local', 'AXFR'))).rcode).toBe('REFUSED');
    const notify = q('web.default.svc.cluster.local');
    notify.writeUInt16BE(notify.readUInt16BE(2) | (4 << 11), 2);
    expect(decode(await s.query(notify)).rcode).toBe('NOTIMP');
    const response = q('web.default.svc.cluster.local');
    response.writeUInt16BE(response.readUInt16BE(2) | 0x8000, 2);
    expect(await s.query(response)).toBeNull();
  });

  it('large answers: TC over UDP (512, or the EDNS size), complete over TCP', async () => {
    const many = Array.from({ length: 120 }, (_, i) => ({ addresses: [`10.9.${i >> 8}.${i & 255}`] }));
    const s = server({ zone: buildZone({ services: [svc('big', { clusterIP: 'None' })], endpointSlices: [slice('big', many)] }) });
    const udp = decode(await s.query(q('big.default.svc.cluster.local')));
    expect(udp).toMatchObject({ flag_tc: true, answers: [] });
    const ednsReply = decode(await s.query(q('big.default.svc.cluster.local', 'A', edns(4096))));
    expect(ednsReply.flag_tc).toBe(true); // 120 uncompressed A records exceed 1232 bytes
    const small = buildZone({ services: [svc('big', { clusterIP: 'None' })], endpointSlices: [slice('big', many.slice(0, 20))] });
    s.setZone(small);
    expect(decode(await s.query(q('big.default.svc.cluster.local'))).flag_tc).toBe(true);
    const e = decode(await s.query(q('big.default.svc.cluster.local', 'A', edns(1232))));
    expect(e.flag_tc).toBe(false);
    expect(e.answers).toHaveLength(20);
    s.setZone(buildZone({ services: [svc('big', { clusterIP: 'None' })], endpointSlices: [slice('big', many)] }));
    const tcp = decode(await s.query(q('big.default.svc.cluster.local'), 'tcp'));
    expect(tcp.flag_tc).toBe(false);
    expect(tcp.answers).toHaveLength(120);
  });

  it('forwards other names, caches answers for their TTL and negative answers per SOA minimum', async () => {
    const up = await fakeUpstream((qq) =>
      qq.name.toLowerCase() === 'up.test'
        ? { answers: [{ name: 'up.test', type: 'A', ttl: 60, data: '192.0.2.1' }] }
        : {
            flags: dnsPacket.RECURSION_AVAILABLE | 3,
            authorities: [
              {
                name: 'test',
                type: 'SOA',
                ttl: 900,
                data: { mname: 'a', rname: 'b', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30 },
              },
            ],
          },
    );
    closers.push(up.close);
    const s = server({ upstreams: [{ host: '127.0.0.1', port: up.port }] });
    const r = decode(await s.query(q('UP.test')));
    expect(r).toMatchObject({ id: 4242, rcode: 'NOERROR' });
    expect(r.questions![0].name).toBe('UP.test');
    expect(r.answers![0]).toMatchObject({ data: '192.0.2.1', ttl: 60 });
    const nx = decode(await s.query(q('missing.test')));
    expect(nx.rcode).toBe('NXDOMAIN');
    await up.close();
    // the upstream is gone: both come from the cache
    expect(decode(await s.query(q('up.test'))).answers![0].data).toBe('192.0.2.1');
    expect(decode(await s.query(q('missing.test'))).rcode).toBe('NXDOMAIN');
    expect(up.seen).toEqual(['udp:UP.test/A', 'udp:missing.test/A']);
    expect(s.metrics.cache.hits).toBe(2);
    // the same query again: straight from the cache without decoding, with its own ID
    const again = q('up.test');
    again.writeUInt16BE(99, 0);
    const r2 = decode(await s.query(again));
    expect(r2).toMatchObject({ id: 99, rcode: 'NOERROR' });
    expect(r2.answers![0].data).toBe('192.0.2.1');
    expect(s.metrics.cache.hits).toBe(3);
    // a zone that now owns the name wins over the cache
    s.setZone(buildZone({ endpoints: [ep('up', 'n', ['10.5.0.1/24'])] }, { defaultNetworkDomain: 'test' }));
    expect(decode(await s.query(again)).answers![0].data).toBe('10.5.0.1');
  });

  it('fast path for repeated forwarded queries: TTLs count down, an expired, replaced or evicted entry is not served', async () => {
    let fetches = 0;
    const up = await fakeUpstream((qq) => {
      fetches++;
      return { answers: [{ name: qq.name, type: 'A', ttl: 60, data: `192.0.2.${fetches}` }] };
    });
    closers.push(up.close);
    let now = 1_000_000;
    const s = server({ upstreams: [{ host: '127.0.0.1', port: up.port }], cacheSize: 1, now: () => now });
    const ask = async (name: string, id: number): Promise<Reply> => {
      const m = q(name, 'A', edns(1232));
      m.writeUInt16BE(id, 0);
      const r = decode(await s.query(m));
      expect(r.id).toBe(id);
      expect(r.questions![0].name).toBe(name);
      return r;
    };
    expect((await ask('Ttl.test', 1)).answers![0]).toMatchObject({ ttl: 60, data: '192.0.2.1' });
    expect((await ask('Ttl.test', 2)).answers![0]).toMatchObject({ ttl: 60, data: '192.0.2.1' });
    now += 10_500;
    expect((await ask('Ttl.test', 3)).answers![0]).toMatchObject({ ttl: 50, data: '192.0.2.1' });
    now += 49_000;
    expect((await ask('Ttl.test', 4)).answers![0]).toMatchObject({ ttl: 1, data: '192.0.2.1' });
    expect(fetches).toBe(1);
    // expired: fetched again, full TTL
    now += 1_000;
    expect((await ask('Ttl.test', 5)).answers![0]).toMatchObject({ ttl: 60, data: '192.0.2.2' });
    expect(fetches).toBe(2);
    // another name takes the only cache slot: the first one is not served from the fast path
    expect((await ask('other.test', 6)).answers![0]).toMatchObject({ data: '192.0.2.3' });
    expect((await ask('Ttl.test', 7)).answers![0]).toMatchObject({ ttl: 60, data: '192.0.2.4' });
    expect(fetches).toBe(4);
    // the client's spelling is echoed even when another spelling filled the cache
    expect((await ask('tTL.TEST', 8)).answers![0]).toMatchObject({ data: '192.0.2.4' });
    expect(fetches).toBe(4);
    expect(s.metrics.cache.hits).toBe(4);
  });

  it('an upstream that does not answer: SERVFAIL after the timeout, our zone answered meanwhile', async () => {
    const up = await fakeUpstream(() => null);
    closers.push(up.close);
    const s = server({ upstreams: [{ host: '127.0.0.1', port: up.port }], upstreamTimeoutMs: 300 });
    const slow = s.query(q('slow.example'));
    const ours = decode(await s.query(q('web.default.svc.cluster.local')));
    expect(ours.rcode).toBe('NOERROR');
    let settled = false;
    void slow.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    expect(decode(await slow).rcode).toBe('SERVFAIL');
    expect(s.metrics.upstream.timeouts).toBe(1);
  });

  it('a truncated upstream answer is retried over TCP; ExternalName CNAME is chased upstream', async () => {
    const up = await fakeUpstream(
      (qq, t) =>
        t === 'udp' && qq.name === 'big.test'
          ? { flags: dnsPacket.TRUNCATED_RESPONSE }
          : { answers: [{ name: qq.name, type: 'A', ttl: 30, data: qq.name === 'big.test' ? '192.0.2.7' : '192.0.2.8' }] },
      true,
    );
    closers.push(up.close);
    const s = server({ upstreams: [{ host: '127.0.0.1', port: up.port }] });
    expect(decode(await s.query(q('big.test'))).answers![0].data).toBe('192.0.2.7');
    expect(up.seen).toEqual(['udp:big.test/A', 'tcp:big.test/A']);
    const ext = decode(await s.query(q('ext.default.svc.cluster.local')));
    expect(ext.answers!.map((a) => a.data)).toEqual(['www.example.org', '192.0.2.8']);
  });

  it('cache: TTLs lowered by age, expiry, bounded size; cacheTtl per RFC 2308', () => {
    let now = 1_000_000;
    const c = new AnswerCache(2, 3600, () => now);
    const msg = (ttl: number): Buffer =>
      dnsPacket.encode({
        id: 1,
        type: 'response',
        questions: [{ name: 'a.test', type: 'A' }],
        answers: [{ name: 'a.test', type: 'A', ttl, data: '192.0.2.1' }],
      });
    c.put('a', msg(100), 100);
    now += 40_500;
    expect((dnsPacket.decode(c.get('a')!).answers![0] as { ttl: number }).ttl).toBe(60);
    now += 60_000;
    expect(c.get('a')).toBeUndefined();
    c.put('x', msg(10), 10);
    c.put('y', msg(10), 10);
    c.put('z', msg(10), 10);
    expect(c.size).toBe(2);
    expect(c.get('x')).toBeUndefined();
    expect(cacheTtl(msg(77))).toBe(77);
    const nx = dnsPacket.encode({
      id: 1,
      type: 'response',
      flags: 3,
      questions: [{ name: 'a.test', type: 'A' }],
      authorities: [
        { name: 'test', type: 'SOA', ttl: 900, data: { mname: 'a', rname: 'b', serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30 } },
      ],
    });
    expect(cacheTtl(nx)).toBe(30);
    expect(cacheTtl(dnsPacket.encode({ id: 1, type: 'response', flags: 2, questions: [{ name: 'a.test', type: 'A' }] }))).toBe(0);
  });

  it('hostile sweep in-process: every message answered with a response for its ID, or dropped; never throws', async () => {
    const s = server();
    let answered = 0;
    for (let i = 0; i < 5000; i++) {
      const m = hostile(i);
      const out = await s.query(m, i % 2 ? 'tcp' : 'udp');
      if (!out) continue;
      answered++;
      expect(out.readUInt16BE(0)).toBe(m.readUInt16BE(0));
      expect(out.readUInt16BE(2) & 0x8000).toBe(0x8000);
    }
    expect(answered).toBeGreaterThan(1000);
    expect(decode(await s.query(q('web.default.svc.cluster.local'))).answers![0].data).toBe('10.96.0.10');
  });

  it('real sockets on loopback: UDP and TCP, per-source rate limit drops the excess', async () => {
    const s = server({ rateLimit: { qps: 1, burst: 3 } });
    expect(await s.setListeners([{ address: '127.0.0.1', port: 0 }])).toEqual([]);
    const { port } = s.addresses()[0];
    const c = dgram.createSocket('udp4');
    closers.push(async () => {
      c.close();
    });
    const got: Buffer[] = [];
    c.on('message', (m) => got.push(m));
    for (let i = 0; i < 10; i++) c.send(q('web.default.svc.cluster.local'), port, '127.0.0.1');
    // every datagram answered or counted as dropped (not a fixed sleep: a loaded machine may take longer)
    for (let i = 0; i < 200 && got.length + s.metrics.dropped.rateLimited < 10; i++) await new Promise((r) => setTimeout(r, 25));
    expect(got.length).toBe(3);
    expect(s.metrics.dropped.rateLimited).toBe(7);
    const s2 = server();
    await s2.setListeners([{ address: '127.0.0.1', port: 0 }]);
    const reply = await new Promise<Buffer>((resolve) => {
      const t = net.connect(s2.addresses()[0].port, '127.0.0.1', () => {
        const m = q('db.default.svc.cluster.local');
        const len = Buffer.alloc(2);
        len.writeUInt16BE(m.length);
        t.write(Buffer.concat([len, m]));
      });
      let buf = Buffer.alloc(0);
      t.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          t.destroy();
          resolve(buf.subarray(2));
        }
      });
    });
    expect(
      decode(reply)
        .answers!.map((a) => a.data)
        .sort(),
    ).toEqual(['10.1.0.5', '10.1.0.6']);
    expect(s2.metrics.responses.NOERROR).toBe(1);
    expect(s2.metrics.duration.count).toBe(1);
  });

  it('under Bun (the shipped runtime): a burst of queries is answered in batches, each reply for its query; a hostile sweep leaves it serving', async (t) => {
    if (!existsSync(BUN)) {
      console.log(`skipped: ${BUN} missing (npm install)`);
      t.skip();
    }
    const up = await fakeUpstream((qq) => ({ answers: [{ name: qq.name, type: 'A', ttl: 300, data: '192.0.2.9' }] }));
    closers.push(up.close);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dns-unit-bun-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const port = testPort();
    writeFileSync(path.join(dir, 'objects.json'), JSON.stringify([...objects.namespaces!, ...objects.services!]));
    writeFileSync(
      path.join(dir, 'agent.json'),
      JSON.stringify({
        dns: { upstreams: [`127.0.0.1:${up.port}`], listen: [`127.0.0.1:${port}`], listenOnGateways: false, rateLimit: false },
      }),
    );
    const srv = spawn(
      BUN,
      [path.join(ROOT, 'agent/dns/standalone.ts'), '--objects', path.join(dir, 'objects.json'), '--config', path.join(dir, 'agent.json')],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: { ...process.env, CNI_TS_DNS_NODE_UDP: '' },
      },
    );
    const exited = new Promise<number | null>((r) => srv.on('exit', (code) => r(code)));
    closers.push(async () => {
      srv.kill('SIGTERM');
      await exited;
    });
    let out = '';
    srv.stdout.on('data', (d: Buffer) => (out += d.toString()));
    for (let i = 0; i < 200 && !out.includes('ready'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain(`ready 127.0.0.1:${port}`);

    const c = dgram.createSocket('udp4');
    closers.push(async () => {
      c.close();
    });
    const replies = new Map<number, Reply>();
    c.on('message', (m) => replies.set(m.readUInt16BE(0), decode(m)));
    const names = (i: number): [string, string] =>
      i % 3 === 0
        ? ['web.default.svc.cluster.local', '10.96.0.10']
        : i % 3 === 1
          ? [`nx${i}.default.svc.cluster.local`, '']
          : [`f${i % 20}.Fwd.test`, '192.0.2.9'];
    // bursts of 100 (more would overflow a default socket receive buffer: ~250 small datagrams)
    const N = 600;
    for (let w = 0; w < N; w += 100) {
      for (let i = w; i < w + 100; i++) {
        const m = q(names(i)[0], 'A', i % 2 ? edns(1232) : {});
        m.writeUInt16BE(i, 0);
        c.send(m, port, '127.0.0.1');
      }
      for (let i = 0; i < 100 && replies.size < w + 100; i++) await new Promise((r) => setTimeout(r, 20));
    }
    expect(replies.size).toBe(N);
    for (let i = 0; i < N; i++) {
      const r = replies.get(i)!;
      const [name, data] = names(i);
      expect(r.questions![0].name).toBe(name);
      expect(r.type).toBe('response');
      if (data) expect(r.answers![0].data).toBe(data);
      else expect(r.rcode).toBe('NXDOMAIN');
    }
    // 20 forwarded names: each went upstream once (identical queries in flight share one exchange)
    expect(up.seen.length).toBe(20);
    for (let i = 0; i < 2000; i++) {
      c.send(hostile(i), port, '127.0.0.1');
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    replies.clear();
    const m = q('web.default.svc.cluster.local');
    m.writeUInt16BE(65000, 0);
    c.send(m, port, '127.0.0.1');
    for (let i = 0; i < 100 && !replies.has(65000); i++) await new Promise((r) => setTimeout(r, 30));
    expect(replies.get(65000)?.answers![0].data).toBe('10.96.0.10');
    // lone queries (a low rate: each reply leaves at once, the cached answer itself with the
    // query's ID written in), one of them from a client gone before its answer (the refusal
    // that leaves pending must not cost the next client its reply): every reply for its query
    for (let i = 0; i < 20; i++) {
      if (i === 10) {
        const gone = dgram.createSocket('udp4');
        await new Promise<void>((r) => gone.bind(0, '127.0.0.1', () => r()));
        gone.send(q('web.default.svc.cluster.local'), port, '127.0.0.1', () => gone.close());
        await new Promise((r) => setTimeout(r, 30));
      }
      const id = 64000 + i;
      const lone = q(i % 2 ? 'web.default.svc.cluster.local' : `f${i}.Fwd.test`);
      lone.writeUInt16BE(id, 0);
      c.send(lone, port, '127.0.0.1');
      for (let k = 0; k < 100 && !replies.has(id); k++) await new Promise((r) => setTimeout(r, 5));
      expect(replies.get(id)?.answers![0].data).toBe(i % 2 ? '10.96.0.10' : '192.0.2.9');
    }
    const before = out.length;
    srv.kill('SIGUSR1');
    for (let i = 0; i < 100 && !out.slice(before).includes('}'); i++) await new Promise((r) => setTimeout(r, 30));
    const metrics = JSON.parse(
      out
        .slice(before)
        .split('\n')
        .find((l) => l.startsWith('{'))!,
    ) as {
      queries: { udp: number };
      responses: Record<string, number>;
      dropped: Record<string, number>;
    };
    // (some of the sweep's large datagrams overflow the socket's receive buffer: not all arrive)
    expect(metrics.queries.udp).toBeGreaterThan(N + 100);
    expect(metrics.responses.FORMERR).toBeGreaterThan(0);
    expect(metrics.dropped.sendDropped).toBe(0);
  });

  it('startDns: builds from getObjects, swaps on refresh, coalesces scheduled refreshes, answers lookups', async () => {
    let objs: ZoneObjects = { services: [svc('a', { clusterIP: '10.96.1.1' })] };
    let calls = 0;
    const logs: string[] = [];
    const h = await startDns(
      { dns: { listenOnGateways: false, upstreams: [] } },
      () => {
        calls++;
        return objs;
      },
      { log: (m) => logs.push(m), serial: () => 7 },
    );
    closers.push(() => h.close());
    expect(h.lookup('a.default.svc.cluster.local')!.answers[0].data).toBe('10.96.1.1');
    objs = { services: [svc('b', { clusterIP: '10.96.1.2' })] };
    for (let i = 0; i < 5; i++) h.scheduleRefresh();
    // the five requests coalesce into one refresh: wait for it, then give a sixth a chance to show up
    for (let i = 0; i < 200 && calls < 2; i++) await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 150));
    expect(calls).toBe(2);
    expect(h.lookup('a.default.svc.cluster.local')!.rcode).toBe('NXDOMAIN');
    expect(h.lookup('b.default.svc.cluster.local')!.answers[0].data).toBe('10.96.1.2');
    expect(h.server.metrics.zone).toMatchObject({ swaps: 2, serial: 7 });
    expect(logs).toEqual([]);
  });
});
