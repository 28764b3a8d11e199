/**
 * dhcp IPAM and its daemon against dnsmasq serving DHCP inside a server netns of this test,
 * on one end of a veth whose other end is the container's eth0 (never a real interface).
 * The daemon listens on a socket of this test, not /run/cni/dhcp.sock. Both daemons speak Go
 * net/rpc: ours against ours, the Go reference's plugin (/usr/lib/cni/dhcp) against our
 * daemon, and ours against the reference's daemon, with option 121 (classless routes).
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN, runPlugin, uid } from './helpers/run.ts';
import { listening } from './helpers/wait.ts';
import {
  clientOptions,
  decode,
  DEFAULT_REQUEST,
  encode,
  encodeClassless,
  ipOpt,
  leaseOf,
  MSG,
  msgType,
  parseClassless,
  parseStatic,
  planArgs,
  planOf,
  prepareOptions,
} from '../ipam/dhcp/packet.ts';
import { fromGoResult, leaseResult, toGoResult } from '../ipam/dhcp/result.ts';
import { GobDecoder, GobEncoder } from '../ipam/dhcp/gob.ts';
import { ResultT, type GoResult } from '../ipam/dhcp/rpc.ts';

const PREFIX = 'dhr';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());
const haveDnsmasq = existsSync('/usr/sbin/dnsmasq');
if (!haveDnsmasq) console.log('skipping dhcp kernel tests: dnsmasq is not installed (dnsmasq-base)');
const haveRef = existsSync(`${REF_BIN}/dhcp`);
const haveActivate = existsSync('/usr/bin/systemd-socket-activate');
if (!haveActivate) console.log('skipping the dhcp socket activation test: systemd-socket-activate is not installed');
if (!haveRef) console.log('skipping dhcp interop tests: the reference plugins are not installed (containernetworking-plugins)');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 20000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface Lab {
  server: TestNetns;
  ctr: TestNetns;
  sock: string;
  leases: string;
  daemonLog: () => string;
  conf: Record<string, unknown>;
}

function track(p: ResultPromise): void {
  let exited = false;
  p.then(
    () => (exited = true),
    () => (exited = true),
  );
  cleanup.add(async () => {
    if (exited) return;
    p.kill('SIGTERM');
    await Promise.race([p.catch(() => undefined), sleep(6000)]);
    if (!exited) p.kill('SIGKILL');
  });
}

interface LabOpts {
  /** whose daemon serves the socket */
  daemon?: 'ours' | 'ref';
  /** more dnsmasq arguments */
  dnsmasq?: string[];
  /** our daemon started by systemd-socket-activate on the first connection (LISTEN_FDS) */
  activation?: boolean;
  /** instead of the container's eth0: `dhrm0` in the server netns, a macvlan master on the wire to dnsmasq */
  master?: boolean;
}

async function lab(o: LabOpts = {}): Promise<Lab> {
  const server = await makeNetns(cleanup, PREFIX);
  const ctr = await makeNetns(cleanup, PREFIX);
  if (o.master) {
    await inNs(server, 'ip', ['link', 'add', 'dhrsrv0', 'type', 'veth', 'peer', 'name', 'dhrm0']);
    await inNs(server, 'ip', ['link', 'set', 'dhrm0', 'up']);
  } else await inNs(server, 'ip', ['link', 'add', 'dhrsrv0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ctr.path]);
  await inNs(server, 'ip', ['addr', 'add', '10.91.0.1/24', 'dev', 'dhrsrv0']);
  await inNs(server, 'ip', ['link', 'set', 'dhrsrv0', 'up']);
  const tag = uid(PREFIX);
  const leases = `/tmp/${tag}.leases`;
  const sock = `/tmp/${tag}-dhcp.sock`;
  cleanup.add(async () => rmSync(leases, { force: true }));
  cleanup.add(async () => rmSync(sock, { force: true }));
  const dnsmasq = execa('nsenter', [
    `--net=${server.path}`,
    '--',
    'dnsmasq',
    '--no-daemon',
    '--port=0',
    '--interface=dhrsrv0',
    '--bind-interfaces',
    '--conf-file=/dev/null',
    '--dhcp-range=10.91.0.10,10.91.0.50,255.255.255.0,2m',
    '--dhcp-option=3,10.91.0.1',
    '--dhcp-option=option:T1,3',
    `--dhcp-leasefile=${leases}`,
    '--log-dhcp',
    `--pid-file=/tmp/${tag}.pid`,
    ...(o.dnsmasq ?? []),
  ]);
  track(dnsmasq);
  cleanup.add(async () => rmSync(`/tmp/${tag}.pid`, { force: true }));
  let log = '';
  const daemon =
    o.daemon === 'ref'
      ? execa(`${REF_BIN}/dhcp`, ['daemon', '-socketpath', sock, '-timeout', '4s'], { all: true })
      : o.activation
        ? execa('systemd-socket-activate', ['-l', sock, path.join(BIN, 'cni-ts'), 'dhcp', 'daemon', '--timeout-ms', '4000'], { all: true })
        : execa(path.join(BIN, 'cni-ts'), ['dhcp', 'daemon', '-socketpath', sock, '--timeout-ms', '4000'], { all: true });
  daemon.all?.on('data', (d: Buffer) => (log += d.toString()));
  track(daemon);
  await waitFor('the daemon socket', () => existsSync(sock));
  // dnsmasq answers once it has its DHCP socket (was a fixed 300 ms: a DISCOVER sent before
  // that waits for the client's retransmission, within the daemon's 4 s timeout)
  await listening(server, 67, 'udp');
  const conf = { cniVersion: '1.0.0', name: 'dhrdhcp', type: 'dhcp', ipam: { type: 'dhcp', daemonSocketPath: sock } };
  return { server, ctr, sock, leases, daemonLog: () => log, conf };
}

const call = (l: Lab, command: string, id: string, extra: Record<string, unknown> = {}, binDir = BIN, args?: string) =>
  runPlugin('dhcp', { command, containerId: id, netns: l.ctr.path, ifname: 'eth0', config: { ...l.conf, ...extra }, binDir, args });
/** ipam.provide: the host name (option 12) from CNI_ARGS, which dnsmasq writes into its lease file */
const withHostname = (l: Lab): Record<string, unknown> => ({
  ipam: { ...(l.conf.ipam as object), provide: [{ option: 'host-name', fromArg: 'K8S_POD_NAME' }] },
});
/** dnsmasq sends option 121 whether asked or not (the reference 1.1.1 asks only for router and mask) */
const ROUTES_121 = ['--dhcp-option-force=121,10.94.0.0/16,10.91.0.1,0.0.0.0/0,10.91.0.1'];
const WANT_121 = [
  { dst: '10.94.0.0/16', gw: '10.91.0.1' },
  { dst: '0.0.0.0/0', gw: '10.91.0.1' },
];
const leased = (l: Lab, addr: string): boolean => existsSync(l.leases) && readFileSync(l.leases, 'utf8').includes(addr);
const addrOf = (r: { json?: Record<string, unknown> }): string => (r.json?.ips as Array<{ address: string }>)[0].address;

describe('dhcp: messages (pure)', () => {
  it('encode/decode round trip, options, lease and result', () => {
    const m = {
      op: 1 as const,
      xid: 0x1234,
      flags: 0x8000,
      chaddr: '02:00:00:00:00:01',
      options: clientOptions(MSG.REQUEST, 'c/n/eth0', [[50, ipOpt('10.0.0.5')]]),
    };
    const b = encode(m);
    expect(b.length).toBeGreaterThanOrEqual(300);
    const d = decode(b)!;
    expect([d.xid, d.flags, d.chaddr, msgType(d)]).toEqual([0x1234, 0x8000, '02:00:00:00:00:01', MSG.REQUEST]);
    expect(d.options.get(61)!.subarray(1).toString()).toBe('c/n/eth0');
    const ack = decode(
      encode({
        op: 2,
        xid: 1,
        yiaddr: '10.0.0.5',
        chaddr: '02:00:00:00:00:01',
        options: new Map([
          [53, Buffer.from([MSG.ACK])],
          [1, ipOpt('255.255.254.0')],
          [3, ipOpt('10.0.0.1')],
          [54, ipOpt('10.0.0.1')],
          [51, Buffer.from([0, 0, 0, 120])],
          [6, Buffer.concat([ipOpt('10.0.0.53'), ipOpt('10.0.0.54')])],
        ]),
      }),
    )!;
    const l = leaseOf(ack);
    expect(l).toEqual({
      address: '10.0.0.5',
      prefix: 23,
      router: '10.0.0.1',
      server: '10.0.0.1',
      leaseSeconds: 120,
      t1: 60,
      dns: ['10.0.0.53', '10.0.0.54'],
    });
    expect(leaseResult(l)).toEqual({
      ips: [{ address: '10.0.0.5/23', gateway: '10.0.0.1' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.1' }],
    });
    expect(decode(Buffer.alloc(100))).toBeUndefined();
  });

  it('option 121 (RFC 3442) and 33, routes as the reference builds them, priority', () => {
    const routes = [
      { dst: '10.94.0.0/16', gw: '10.0.0.1' },
      { dst: '192.168.7.128/25', gw: '10.0.0.2' },
      { dst: '10.95.0.0/16', gw: '0.0.0.0' },
      { dst: '0.0.0.0/0', gw: '10.0.0.1' },
    ];
    const b121 = encodeClassless(routes);
    // the RFC's own example: 10.17/16 via 10.0.0.1 is 16 10 17 10 0 0 1
    expect(encodeClassless([{ dst: '10.17.0.0/16', gw: '10.0.0.1' }]).toString('hex')).toBe('100a110a000001');
    expect(parseClassless(b121)).toEqual(routes);
    expect(parseClassless(Buffer.from([24, 10, 0]))).toEqual([]); // truncated: ignored
    expect(parseStatic(Buffer.concat([ipOpt('10.9.0.0'), ipOpt('10.0.0.1'), ipOpt('172.16.0.0'), ipOpt('10.0.0.1')]))).toEqual([
      { dst: '10.9.0.0/8', gw: '10.0.0.1' },
      { dst: '172.16.0.0/16', gw: '10.0.0.1' },
    ]);
    const base = { address: '10.0.0.5', prefix: 24, router: '10.0.0.1', server: '10.0.0.1', leaseSeconds: 60, t1: 30, dns: [] };
    // 121 present: option 33 and the router's default route are ignored; on-link routes get scope link
    expect(leaseResult({ ...base, classless: routes, static: [{ dst: '10.9.0.0/8', gw: '10.0.0.1' }] }).routes).toEqual([
      routes[0],
      routes[1],
      { ...routes[2], scope: 253 },
      routes[3],
    ]);
    expect(leaseResult({ ...base, static: [{ dst: '10.9.0.0/8', gw: '10.0.0.3' }] }, 100).routes).toEqual([
      { dst: '10.9.0.0/8', gw: '10.0.0.3', priority: 100 },
      { dst: '0.0.0.0/0', gw: '10.0.0.1', priority: 100 },
    ]);
  });

  it('ipam.provide and ipam.request as the reference reads them, and on the client command line', () => {
    const plan = prepareOptions(
      'IgnoreUnknown=1;K8S_POD_NAME=web-0',
      [
        { option: 'host-name', fromArg: 'K8S_POD_NAME' },
        { option: '60', value: 'cni' },
        { option: 'user-class', fromArg: 'ABSENT' },
      ],
      [{ option: 'host-name' }, { skipDefault: false }],
    );
    expect(plan).toEqual({
      provide: [
        [12, Buffer.from('web-0')],
        [60, Buffer.from('cni')],
      ],
      request: [12, ...DEFAULT_REQUEST],
    });
    expect(prepareOptions('', [], [{ option: '42', skipDefault: true }]).request).toEqual([42]);
    expect(() => prepareOptions('', [{ option: 'nosuch-name', value: 'x' }])).toThrow(/Can not parse option "nosuch-name"/);
    expect(planOf(planArgs(plan))).toEqual(plan);
    const m = clientOptions(MSG.DISCOVER, 'id', [], plan);
    expect([m.get(12)?.toString(), [...m.get(55)!]]).toEqual(['web-0', plan.request]);
    expect(clientOptions(MSG.RELEASE, 'id', [], plan).has(12)).toBe(false);
  });

  it('the result through the Go types100.Result on the wire and back', () => {
    const r = {
      ips: [
        { address: '10.0.0.5/23', gateway: '10.0.0.1' },
        { address: 'fd00:1::5/64', gateway: 'fd00:1::1', interface: 0 },
      ],
      routes: [
        { dst: '0.0.0.0/0', gw: '10.0.0.1', priority: 7 },
        { dst: '10.95.0.0/16', gw: '0.0.0.0', scope: 253 },
        { dst: '::/0', gw: 'fd00:1::1', mtu: 1400, table: 100 },
      ],
      dns: { nameservers: ['10.0.0.53'], search: ['example.test'] },
    };
    const enc = new GobEncoder();
    const dec = new GobDecoder();
    dec.push(enc.encode(ResultT, toGoResult(r)));
    // interface 0 and a zero table are zero values: gob does not send them
    expect(fromGoResult(dec.next()!.value as GoResult)).toEqual({
      ...r,
      ips: [r.ips[0], { ...r.ips[1], interface: undefined }].map(clean),
    });
  });
});

function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

describe.skipIf(!haveDnsmasq)('dhcp: our plugin and our daemon, dnsmasq', () => {
  it('ADD leases from dnsmasq, the lease is renewed, CHECK, DEL releases it (dnsmasq forgets it), repeated DEL', async () => {
    const l = await lab();
    const id = uid(PREFIX);
    const r = await call(l, 'ADD', id);
    expect(r.exitCode, r.stdout + r.stderr + l.daemonLog()).toBe(0);
    const ips = r.json?.ips as Array<{ address: string; gateway: string }>;
    expect(ips[0].address).toMatch(/^10\.91\.0\.(1\d|[2-4]\d|50)\/24$/);
    expect(ips[0].gateway).toBe('10.91.0.1');
    expect(r.json?.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.91.0.1' }]);
    const addr = ips[0].address.split('/')[0];
    await waitFor('the lease in dnsmasq', () => leased(l, addr));
    // the interface plugin puts the address on the interface; renewals are answered to it
    await inNs(l.ctr, 'ip', ['addr', 'add', ips[0].address, 'dev', 'eth0']);
    await waitFor('a renewal', () => /renewed 10\.91\.0\.\d+/.test(l.daemonLog()), 30000);
    // a second ADD for the same attachment: the daemon answers the lease it holds
    const again = await call(l, 'ADD', id);
    expect(again.json?.ips).toEqual(r.json?.ips);
    expect(l.daemonLog().match(/acquiring lease/g)).toHaveLength(1);
    expect((await call(l, 'CHECK', id, { prevResult: r.json })).exitCode).toBe(0);
    const other = { ...r.json, ips: [{ address: '10.91.0.99/24', gateway: '10.91.0.1' }] };
    expect((await call(l, 'CHECK', id, { prevResult: other })).json).toMatchObject({ code: 105 });
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
    await waitFor('dnsmasq to drop the released lease', () => !leased(l, addr));
    expect((await inNs(l.ctr, 'ip', ['route', 'show', 'table', 'main'])).stdout).not.toMatch(/255\.255\.255\.255/);
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
  });

  it('option 121: the classless routes replace the default route; an on-link route gets scope link; ipam.priority', async () => {
    const l = await lab({ dnsmasq: ['--dhcp-option=121,10.94.0.0/16,10.91.0.1,10.95.0.0/16,0.0.0.0,0.0.0.0/0,10.91.0.1'] });
    const id = uid(PREFIX);
    // route priority and scope are CNI 1.1 keys
    const r = await call(l, 'ADD', id, { cniVersion: '1.1.0', ipam: { ...(l.conf.ipam as object), priority: 50 } });
    expect(r.exitCode, r.stdout + r.stderr + l.daemonLog()).toBe(0);
    expect(r.json?.routes).toEqual([
      { dst: '10.94.0.0/16', gw: '10.91.0.1', priority: 50 },
      { dst: '10.95.0.0/16', gw: '0.0.0.0', priority: 50, scope: 253 },
      { dst: '0.0.0.0/0', gw: '10.91.0.1', priority: 50 },
    ]);
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
  });

  it('the interface goes away without a DEL: the lease maintenance ends at the next renewal, DEL still succeeds', async () => {
    const l = await lab();
    const id = uid(PREFIX);
    const r = await call(l, 'ADD', id);
    expect(r.exitCode, r.stdout + r.stderr + l.daemonLog()).toBe(0);
    await inNs(l.server, 'ip', ['link', 'del', 'dhrsrv0']); // and the container's eth0 with it
    await waitFor('the client to notice', () => /eth0 no longer exists/.test(l.daemonLog()), 30000);
    await waitFor('no client left', async () => (await sh('pgrep', ['-f', `client-id ${id}/`], { allowFail: true })).stdout.trim() === '');
    // DEL of a lease the daemon no longer holds succeeds
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
  });

  it('no daemon: code 11; no server answering: an error naming it, no client left running', async () => {
    const l = await lab();
    const none = await runPlugin('dhcp', {
      command: 'ADD',
      containerId: 'x',
      netns: l.ctr.path,
      ifname: 'eth0',
      config: { ...l.conf, ipam: { type: 'dhcp', daemonSocketPath: `/tmp/${uid(PREFIX)}-absent.sock` } },
    });
    expect(none.json).toMatchObject({ code: 11 });
    const silent = await makeNetns(cleanup, PREFIX);
    await inNs(silent, 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other']);
    const s = await runPlugin('dhcp', { command: 'ADD', containerId: 'y', netns: silent.path, ifname: 'eth0', config: l.conf });
    expect(s.exitCode).not.toBe(0);
    expect(String(s.json?.msg)).toMatch(/error calling DHCP.Allocate: .*no lease/);
    expect((await sh('pgrep', ['-f', `client-id y/dhrdhcp/eth0`], { allowFail: true })).stdout.trim()).toBe('');
    // STATUS: the daemon answers the CONNECT; none on the socket: 50
    expect((await runPlugin('dhcp', { command: 'STATUS', config: { ...l.conf, cniVersion: '1.1.0' } })).exitCode).toBe(0);
    const st = await runPlugin('dhcp', {
      command: 'STATUS',
      config: { ...l.conf, cniVersion: '1.1.0', ipam: { type: 'dhcp', daemonSocketPath: '/tmp/dhr-absent.sock' } },
    });
    expect(st.json).toMatchObject({ code: 50 });
  });
});

describe.skipIf(!haveDnsmasq || !haveRef)('dhcp: interop with the Go reference (net/rpc on the daemon socket)', () => {
  it('the reference plugin against our daemon: ADD (option 121 routes), CHECK, DEL releases; the same result as our plugin', async () => {
    const l = await lab({ dnsmasq: ROUTES_121 });
    const id = uid(PREFIX);
    const ref = await call(l, 'ADD', id, withHostname(l), REF_BIN, 'K8S_POD_NAME=dhr-ref-pod');
    expect(ref.exitCode, ref.stdout + ref.stderr + l.daemonLog()).toBe(0);
    expect(ref.json?.routes).toEqual(WANT_121);
    // CNI_ARGS reached our daemon in skel.CmdArgs.Args: dnsmasq got the host name
    await waitFor('the host name in dnsmasq', () => leased(l, 'dhr-ref-pod'));
    expect((ref.json?.ips as unknown[])[0]).toMatchObject({ gateway: '10.91.0.1' });
    const addr = addrOf(ref);
    await waitFor('the lease in dnsmasq', () => leased(l, addr.split('/')[0]));
    // our plugin for the same attachment gets the same answer from the same daemon
    const ours = await call(l, 'ADD', id);
    expect(ours.exitCode).toBe(0);
    expect({ ...ours.json, dns: {} }).toEqual(ref.json);
    expect((await call(l, 'CHECK', id, { prevResult: ref.json }, REF_BIN)).exitCode).toBe(0);
    const del = await call(l, 'DEL', id, {}, REF_BIN);
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    await waitFor('dnsmasq to drop the released lease', () => !leased(l, addr.split('/')[0]));
    expect(l.daemonLog()).toMatch(/releasing lease/);
    // an rpc error comes back to the reference plugin as its error
    const bad = await runPlugin('dhcp', {
      command: 'ADD',
      containerId: id,
      netns: l.ctr.path,
      ifname: 'nosuch0',
      config: l.conf,
      binDir: REF_BIN,
    });
    expect(String(bad.json?.msg)).toMatch(/error calling DHCP.Allocate: dhcp client: no interface nosuch0/);
  });

  it('our plugin against the reference daemon: ADD (option 121 routes), CHECK, DEL releases; the same result as the reference plugin', async () => {
    const l = await lab({ daemon: 'ref', dnsmasq: ROUTES_121 });
    const id = uid(PREFIX);
    const ours = await call(l, 'ADD', id, withHostname(l), BIN, 'K8S_POD_NAME=dhr-our-pod');
    expect(ours.exitCode, ours.stdout + ours.stderr + l.daemonLog()).toBe(0);
    expect(ours.json?.routes).toEqual(WANT_121);
    // our plugin's CNI_ARGS reached the reference daemon: dnsmasq got the host name
    await waitFor('the host name in dnsmasq', () => leased(l, 'dhr-our-pod'));
    const addr = addrOf(ours);
    expect(addr).toMatch(/^10\.91\.0\.\d+\/24$/);
    await waitFor('the lease in dnsmasq', () => leased(l, addr.split('/')[0]));
    expect((await call(l, 'CHECK', id, { prevResult: ours.json })).exitCode).toBe(0);
    // the reference plugin, same attachment, same daemon: the same lease, the same result
    const ref = await call(l, 'ADD', id, {}, REF_BIN);
    expect(ref.exitCode).toBe(0);
    expect(ref.json).toEqual({ ...ours.json, dns: {} });
    const del = await call(l, 'DEL', id);
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    await waitFor('dnsmasq to drop the released lease', () => !leased(l, addr.split('/')[0]));
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
    // the reference daemon's error reaches our plugin's message
    const bad = await runPlugin('dhcp', { command: 'ADD', containerId: id, netns: l.ctr.path, ifname: 'nosuch0', config: l.conf });
    expect(bad.json).toMatchObject({ code: 50 });
    expect(String(bad.json?.msg)).toMatch(/error calling DHCP.Allocate: error looking up "nosuch0"/);
  });

  it.skipIf(!haveActivate)('socket activation: an ADD of the reference plugin starts our daemon on the socket systemd holds', async () => {
    const l = await lab({ activation: true });
    const id = uid(PREFIX);
    const ref = await call(l, 'ADD', id, {}, REF_BIN);
    expect(ref.exitCode, ref.stdout + ref.stderr + l.daemonLog()).toBe(0);
    expect(l.daemonLog()).toMatch(/listening on the socket systemd passed \(fd 3\)/);
    expect((await call(l, 'DEL', id, {}, REF_BIN)).exitCode).toBe(0);
    await waitFor('dnsmasq to drop the released lease', () => !leased(l, addrOf(ref).split('/')[0]));
  });

  it('a conflist (macvlan + dhcp) run unchanged: the reference pair against our daemon, our pair against the reference daemon', async () => {
    for (const [daemon, bin] of [
      ['ours', REF_BIN],
      ['ref', BIN],
    ] as const) {
      const l = await lab({ master: true, daemon });
      const conf = {
        cniVersion: '1.0.0',
        name: 'dhrmv',
        type: 'macvlan',
        master: 'dhrm0',
        mode: 'bridge',
        ipam: { type: 'dhcp', daemonSocketPath: l.sock },
      };
      const id = uid(PREFIX);
      const run = (command: string) =>
        runPlugin('macvlan', {
          command,
          containerId: id,
          netns: l.ctr.path,
          ifname: 'eth0',
          config: conf,
          binDir: bin,
          path: bin,
          hostNetns: l.server.path,
        });
      const add = await run('ADD');
      expect(add.exitCode, `${daemon} daemon, ${bin}: ${add.stdout} ${add.stderr} ${l.daemonLog()}`).toBe(0);
      const addr = addrOf(add);
      expect(addr).toMatch(/^10\.91\.0\.\d+\/24$/);
      // the leased address is on the container's macvlan interface, and the server answers it
      expect((await inNs(l.ctr, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout).toContain(addr);
      expect((await inNs(l.ctr, 'ping', ['-c', '1', '-W', '3', '10.91.0.1'], true)).exitCode).toBe(0);
      expect((await run('DEL')).exitCode).toBe(0);
      await waitFor('dnsmasq to drop the released lease', () => !leased(l, addr.split('/')[0]));
      await cleanup.run();
    }
  });
});
