/**
 * dhcp IPAM and its daemon against dnsmasq serving DHCP inside a server netns of this test,
 * on one end of a veth whose other end is the container's eth0 (never a real interface).
 * The daemon listens on a socket of this test (`--socket`), not /run/cni/dhcp.sock. The Go
 * reference's daemon speaks Go net/rpc (gob): no side-by-side run, the result shape is
 * checked against the reference's documented one (address + gateway, default route).
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, runPlugin, uid } from './helpers/run.ts';
import { clientOptions, decode, encode, ipOpt, leaseOf, MSG, msgType } from '../ipam/dhcp/packet.ts';
import { leaseResult } from '../ipam/dhcp/index.ts';

const PREFIX = 'pq';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());
const haveDnsmasq = existsSync('/usr/sbin/dnsmasq');
if (!haveDnsmasq) console.log('skipping dhcp kernel tests: dnsmasq is not installed (dnsmasq-base)');

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

async function lab(): Promise<Lab> {
  const server = await makeNetns(cleanup, PREFIX);
  const ctr = await makeNetns(cleanup, PREFIX);
  await inNs(server, 'ip', ['link', 'add', 'pqsrv0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ctr.path]);
  await inNs(server, 'ip', ['addr', 'add', '10.91.0.1/24', 'dev', 'pqsrv0']);
  await inNs(server, 'ip', ['link', 'set', 'pqsrv0', 'up']);
  const tag = uid(PREFIX);
  const leases = `/tmp/${tag}.leases`;
  const sock = `/tmp/${tag}-dhcp.sock`;
  cleanup.add(async () => rmSync(leases, { force: true }));
  const dnsmasq = execa('nsenter', [
    `--net=${server.path}`,
    '--',
    'dnsmasq',
    '--no-daemon',
    '--port=0',
    '--interface=pqsrv0',
    '--bind-interfaces',
    '--conf-file=/dev/null',
    '--dhcp-range=10.91.0.10,10.91.0.50,255.255.255.0,2m',
    '--dhcp-option=3,10.91.0.1',
    '--dhcp-option=option:T1,3',
    `--dhcp-leasefile=${leases}`,
    '--log-dhcp',
    `--pid-file=/tmp/${tag}.pid`,
  ]);
  track(dnsmasq);
  cleanup.add(async () => rmSync(`/tmp/${tag}.pid`, { force: true }));
  let log = '';
  const daemon = execa(path.join(BIN, 'cni-ts'), ['dhcp', 'daemon', '--socket', sock, '--timeout-ms', '4000'], { all: true });
  daemon.all?.on('data', (d: Buffer) => (log += d.toString()));
  track(daemon);
  await waitFor('the daemon socket', () => existsSync(sock));
  await sleep(300);
  const conf = { cniVersion: '1.0.0', name: 'pqdhcp', type: 'dhcp', ipam: { type: 'dhcp', daemonSocketPath: sock } };
  return { server, ctr, sock, leases, daemonLog: () => log, conf };
}

const call = (l: Lab, command: string, id: string, extra: Record<string, unknown> = {}) =>
  runPlugin('dhcp', { command, containerId: id, netns: l.ctr.path, ifname: 'eth0', config: { ...l.conf, ...extra } });

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
});

describe.skipIf(!haveDnsmasq)('dhcp: daemon and dnsmasq', () => {
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
    await waitFor('the lease in dnsmasq', () => existsSync(l.leases) && readFileSync(l.leases, 'utf8').includes(addr));
    // the interface plugin puts the address on the interface; renewals are answered to it
    await inNs(l.ctr, 'ip', ['addr', 'add', ips[0].address, 'dev', 'eth0']);
    await waitFor('a renewal', () => /renewed 10\.91\.0\.\d+/.test(l.daemonLog()), 30000);
    expect((await call(l, 'CHECK', id, { prevResult: r.json })).exitCode).toBe(0);
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
    await waitFor('dnsmasq to drop the released lease', () => !readFileSync(l.leases, 'utf8').includes(addr));
    expect((await inNs(l.ctr, 'ip', ['route', 'show', 'table', 'main'])).stdout).not.toMatch(/255\.255\.255\.255/);
    expect((await call(l, 'DEL', id)).exitCode).toBe(0);
    expect((await call(l, 'CHECK', id, { prevResult: r.json })).json).toMatchObject({ code: 105 });
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
    expect(String(s.json?.msg)).toMatch(/no lease/);
    expect((await sh('pgrep', ['-f', `client-id y/pqdhcp/eth0`], { allowFail: true })).stdout.trim()).toBe('');
  });
});
