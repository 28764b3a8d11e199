/**
 * static IPAM: the pure config -> result logic (unit), and the built executable run as a
 * runtime runs it (every verb, every spec version, overrides, invalid configs), side by side
 * with the reference /usr/lib/cni/static where the reference speaks the version.
 */
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAgainst, requestedMac, resolveAddresses, staticResult, validateStatic, type StaticNetConf } from '../ipam/static/config.ts';
import { CniError } from '../shared/cni/errors.ts';
import { Cleanup, inNs, makeNetns, sh, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN, runPlugin, uid, type RunArgs } from './helpers/run.ts';

const conf = (ipam: Record<string, unknown>, extra: Record<string, unknown> = {}): StaticNetConf =>
  ({ cniVersion: '1.1.0', name: 'statictest', ipam: { type: 'static', ...ipam }, ...extra }) as StaticNetConf;

const DUAL = {
  addresses: [
    { address: '10.10.0.5/24', gateway: '10.10.0.1' },
    { address: '2001:DB8:0:0::5/64', gateway: '2001:db8::1' },
  ],
  routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.10.0.254' }, { dst: '::/0', gw: '2001:db8::1' }],
  dns: { nameservers: ['10.10.0.53'], domain: 'example.test', search: ['example.test'], options: ['ndots:2'] },
};

const noArgs = new Map<string, string>();
const args = (s: string): Map<string, string> => new Map(s.split(';').map((p) => p.split('=') as [string, string]));

function codeOf(fn: () => unknown): { code: number; msg: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return { code: e.code, msg: e.message };
    throw e;
  }
  throw new Error('expected a CniError');
}

describe('static config -> result (pure)', () => {
  it('returns addresses, routes and DNS in canonical spelling, with no interface index', () => {
    const r = staticResult(conf(DUAL), noArgs, '1.1.0');
    expect(r).toEqual({
      ips: [
        { address: '10.10.0.5/24', gateway: '10.10.0.1' },
        { address: '2001:db8::5/64', gateway: '2001:db8::1' },
      ],
      routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.10.0.254' }, { dst: '::/0', gw: '2001:db8::1' }],
      dns: DUAL.dns,
    });
    expect(r.interfaces).toBeUndefined();
  });
  it('CNI_ARGS IP appends to ipam.addresses (reference) and GATEWAY sets the gateway of its subnet', () => {
    const r = resolveAddresses(
      conf({ addresses: [{ address: '10.10.0.5/24' }] }),
      args('IP=10.20.0.7/16, fd00::7/64;GATEWAY=10.20.0.1'),
      '1.0.0',
    );
    expect(r).toEqual([{ address: '10.10.0.5/24' }, { address: '10.20.0.7/16', gateway: '10.20.0.1' }, { address: 'fd00::7/64' }]);
  });
  it('args.cni.ips replaces config and CNI_ARGS IP; runtimeConfig.ips wins over both', () => {
    const c = conf({ addresses: [{ address: '10.10.0.5/24' }] }, { args: { cni: { ips: ['10.30.0.3/24'] } } });
    expect(resolveAddresses(c, args('IP=10.20.0.7/16'), '1.0.0')).toEqual([{ address: '10.30.0.3/24' }]);
    c.runtimeConfig = { ips: ['10.40.0.4/24'] };
    expect(resolveAddresses(c, args('IP=10.20.0.7/16'), '1.0.0')).toEqual([{ address: '10.40.0.4/24' }]);
  });
  it('a runtime address in a configured subnet inherits its prefix (when bare) and gateway', () => {
    const c = conf(
      { addresses: [{ address: '10.10.0.5/24', gateway: '10.10.0.1' }, { address: 'fd00::5/64' }] },
      { runtimeConfig: { ips: ['10.10.0.77', 'fd00::77', '10.10.0.78/24', '10.99.0.1/24'] } },
    );
    expect(resolveAddresses(c, noArgs, '1.0.0')).toEqual([
      { address: '10.10.0.77/24', gateway: '10.10.0.1' },
      { address: 'fd00::77/64' },
      { address: '10.10.0.78/24', gateway: '10.10.0.1' },
      { address: '10.99.0.1/24' },
    ]);
  });
  it('rejects what it cannot use, naming the field', () => {
    expect(codeOf(() => resolveAddresses(conf({}), noArgs, '1.0.0'))).toMatchObject({
      code: 7,
      msg: expect.stringContaining('ipam.addresses'),
    });
    expect(codeOf(() => validateStatic(conf({ addresses: [{ address: '10.0.0.1/24', gateway: 'fd00::1' }] })))).toMatchObject({
      code: 7,
      msg: expect.stringContaining('ipam.addresses[0].gateway'),
    });
    expect(codeOf(() => validateStatic(conf({ addresses: [], routes: [{ dst: '::/0', gw: '10.0.0.1' }] })))).toMatchObject({
      code: 7,
      msg: expect.stringContaining('ipam.routes[0].gw'),
    });
    expect(codeOf(() => resolveAddresses(conf({}, { runtimeConfig: { ips: ['10.0.0.9'] } }), noArgs, '1.0.0'))).toMatchObject({
      code: 7,
      msg: expect.stringContaining('runtimeConfig.ips[0]'),
    });
    expect(codeOf(() => resolveAddresses(conf({}, { args: { cni: { ips: ['nope'] } } }), noArgs, '1.0.0'))).toMatchObject({
      code: 7,
      msg: expect.stringContaining('args.cni.ips[0]'),
    });
    expect(
      codeOf(() => resolveAddresses(conf({ addresses: [{ address: '10.0.0.1/24' }, { address: '10.0.0.1/16' }] }), noArgs, '1.0.0')),
    ).toMatchObject({ code: 7, msg: expect.stringContaining('ipam.addresses[1]') });
    expect(
      codeOf(() => resolveAddresses(conf({ addresses: [{ address: '10.0.0.1/24' }, { address: '10.0.1.1/24' }] }), noArgs, '0.2.0')),
    ).toMatchObject({ code: 7, msg: expect.stringContaining('one address per family') });
    expect(codeOf(() => resolveAddresses(conf({}), args('IP=10.0.0.300/24'), '1.0.0'))).toMatchObject({
      code: 4,
      msg: expect.stringContaining('IP'),
    });
    expect(
      codeOf(() => resolveAddresses(conf({ addresses: [{ address: '10.0.0.1/24' }] }), args('GATEWAY=10.9.9.9'), '1.0.0')),
    ).toMatchObject({ code: 4, msg: expect.stringContaining('GATEWAY') });
  });
  it('0.1.0/0.2.0 accept one address of each family', () => {
    expect(resolveAddresses(conf(DUAL), noArgs, '0.2.0')).toHaveLength(2);
  });
  it('MAC: runtimeConfig.mac, then args.cni.mac, then CNI_ARGS MAC; never part of the IPAM result', () => {
    const c = conf(DUAL, { runtimeConfig: { mac: '02:00:00:00:00:01' }, args: { cni: { mac: '02:00:00:00:00:02' } } });
    expect(requestedMac(c, args('MAC=02:00:00:00:00:03'))).toEqual({ mac: '02:00:00:00:00:01', source: 'runtimeConfig.mac' });
    delete c.runtimeConfig;
    expect(requestedMac(c, args('MAC=02:00:00:00:00:03'))).toEqual({ mac: '02:00:00:00:00:02', source: 'args.cni.mac' });
    delete c.args;
    expect(requestedMac(c, args('MAC=02:00:00:00:00:03'))).toEqual({ mac: '02:00:00:00:00:03', source: 'CNI_ARGS MAC' });
    expect(codeOf(() => requestedMac(c, args('MAC=zz')))).toMatchObject({ code: 4 });
    expect(JSON.stringify(staticResult(c, args('MAC=02:00:00:00:00:03'), '1.1.0'))).not.toContain('02:00:00');
  });
  it('CHECK compares with prevResult by address, prefix and gateway', () => {
    const want = resolveAddresses(conf(DUAL), noArgs, '1.0.0');
    expect(
      checkAgainst(want, {
        ips: [
          { address: '10.10.0.5/24', gateway: '10.10.0.1', interface: 1 },
          { address: '2001:db8:0::5/64', gateway: '2001:db8::1' },
        ],
      }),
    ).toEqual([]);
    expect(checkAgainst(want, { ips: [{ address: '10.10.0.5/24', gateway: '10.10.0.1' }] })).toEqual([
      'address 2001:db8::5/64 is missing from prevResult',
    ]);
    expect(checkAgainst(want, { ips: [{ address: '10.10.0.5/25', gateway: '10.10.0.2' }, want[1]] })).toHaveLength(2);
  });
});

describe('static executable', () => {
  const cleanup = new Cleanup();
  let ns: TestNetns;
  const ctr = uid('ctr');
  beforeAll(async () => {
    ns = await makeNetns(cleanup, 'cnits-static');
  });
  afterAll(async () => {
    await cleanup.run();
  });

  const call = (command: string, config: unknown, extra: Partial<RunArgs> = {}) =>
    runPlugin('static', { command, containerId: ctr, netns: ns.path, ifname: 'eth0', config, ...extra });
  const netconf = (v: string, ipam: Record<string, unknown> = DUAL, extra: Record<string, unknown> = {}) => ({
    cniVersion: v,
    name: 'statictest',
    ipam: { type: 'static', ...ipam },
    ...extra,
  });

  it('1.1.0: ips without version or interface, routes keep 1.1.0 fields, DNS, no interfaces', async () => {
    const ipam = { ...DUAL, routes: [{ dst: '0.0.0.0/0', gw: '10.10.0.1', mtu: 1400, priority: 10, table: 100 }] };
    const r = await call('ADD', netconf('1.1.0', ipam));
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.json).toEqual({
      cniVersion: '1.1.0',
      ips: [
        { address: '10.10.0.5/24', gateway: '10.10.0.1' },
        { address: '2001:db8::5/64', gateway: '2001:db8::1' },
      ],
      routes: [{ dst: '0.0.0.0/0', gw: '10.10.0.1', mtu: 1400, priority: 10, table: 100 }],
      dns: DUAL.dns,
    });
  });
  it('1.0.0: the 1.1.0 route fields are dropped', async () => {
    const r = await call('ADD', netconf('1.0.0', { ...DUAL, routes: [{ dst: '0.0.0.0/0', gw: '10.10.0.1', mtu: 1400 }] }));
    expect(r.json?.routes).toEqual([{ dst: '0.0.0.0/0', gw: '10.10.0.1' }]);
    expect((r.json?.ips as Array<Record<string, unknown>>)[0]).toEqual({ address: '10.10.0.5/24', gateway: '10.10.0.1' });
    expect(r.json?.interfaces).toBeUndefined();
  });
  it.each(['0.3.0', '0.3.1', '0.4.0'])('%s: ips carry version, nothing carries interface', async (v) => {
    const r = await call('ADD', netconf(v));
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json?.cniVersion).toBe(v);
    expect(r.json?.ips).toEqual([
      { version: '4', address: '10.10.0.5/24', gateway: '10.10.0.1' },
      { version: '6', address: '2001:db8::5/64', gateway: '2001:db8::1' },
    ]);
    expect(r.json?.interfaces).toBeUndefined();
  });
  it.each(['0.1.0', '0.2.0'])('%s: ip4/ip6 with the routes of each family', async (v) => {
    const r = await call('ADD', netconf(v));
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.json).toEqual({
      cniVersion: v,
      ip4: { ip: '10.10.0.5/24', gateway: '10.10.0.1', routes: [{ dst: '0.0.0.0/0' }, { dst: '192.168.0.0/16', gw: '10.10.0.254' }] },
      ip6: { ip: '2001:db8::5/64', gateway: '2001:db8::1', routes: [{ dst: '::/0', gw: '2001:db8::1' }] },
      dns: DUAL.dns,
    });
  });
  it.each(['0.2.0', '0.3.1', '0.4.0', '1.0.0'])('%s: same result as the reference static', async (v) => {
    const config = netconf(v);
    const ours = await call('ADD', config);
    const ref = await call('ADD', config, { binDir: REF_BIN, path: REF_BIN });
    expect(ref.exitCode, ref.stdout).toBe(0);
    expect(ours.json).toEqual(ref.json);
  });
  it('same result as the reference for CNI_ARGS IP and GATEWAY', async () => {
    const config = netconf('1.0.0', { addresses: [{ address: '10.10.0.5/24' }] });
    const a = 'IgnoreUnknown=1;IP=10.20.0.7/16,fd00::7/64;GATEWAY=10.20.0.1';
    const ours = await call('ADD', config, { args: a });
    const ref = await call('ADD', config, { args: a, binDir: REF_BIN, path: REF_BIN });
    expect(ours.json).toEqual(ref.json);
    expect(ours.json?.ips).toEqual([
      { address: '10.10.0.5/24' },
      { address: '10.20.0.7/16', gateway: '10.20.0.1' },
      { address: 'fd00::7/64' },
    ]);
  });
  it('overrides: args.cni.ips, then runtimeConfig.ips (capability ips), bare IPs take the configured subnet', async () => {
    const base = { addresses: [{ address: '10.10.0.5/24', gateway: '10.10.0.1' }] };
    let r = await call('ADD', netconf('1.0.0', base, { args: { cni: { ips: ['10.10.0.66'] } } }));
    expect(r.json?.ips).toEqual([{ address: '10.10.0.66/24', gateway: '10.10.0.1' }]);
    r = await call(
      'ADD',
      netconf('1.0.0', base, {
        capabilities: { ips: true },
        runtimeConfig: { ips: ['10.50.0.9/16'] },
        args: { cni: { ips: ['10.10.0.66'] } },
      }),
      { args: 'IP=10.60.0.1/24' },
    );
    expect(r.json?.ips).toEqual([{ address: '10.50.0.9/16' }]);
  });
  it('MAC from runtimeConfig.mac, args.cni.mac or CNI_ARGS MAC is accepted and left to the interface plugin', async () => {
    const c = netconf('1.1.0', DUAL, { runtimeConfig: { mac: '02:aa:bb:cc:dd:01' }, args: { cni: { mac: '02:aa:bb:cc:dd:02' } } });
    const r = await call('ADD', c, { args: 'MAC=02:aa:bb:cc:dd:03' });
    expect(r.exitCode, r.stdout).toBe(0);
    expect(r.stdout).not.toMatch(/02:aa:bb/);
    expect(r.json?.interfaces).toBeUndefined();
    const bad = await call('ADD', netconf('1.1.0', DUAL, { runtimeConfig: { mac: 'not-a-mac' } }));
    expect(bad.json).toMatchObject({ code: 7, msg: expect.stringContaining('runtimeConfig.mac') });
  });
  it.each([
    ['no addresses at all', { type: 'static' }, 'ipam.addresses'],
    ['address not a CIDR', { addresses: [{ address: '10.0.0.1' }] }, 'ipam.addresses[0].address'],
    ['gateway of another family', { addresses: [{ address: '10.0.0.1/24', gateway: 'fd00::1' }] }, 'ipam.addresses[0].gateway'],
    ['gateway not an IP', { addresses: [{ address: '10.0.0.1/24', gateway: '10.0.0' }] }, 'ipam.addresses[0].gateway'],
    ['route dst not a CIDR', { addresses: [{ address: '10.0.0.1/24' }], routes: [{ dst: 'default' }] }, 'ipam.routes[0].dst'],
    [
      'route gw of another family',
      { addresses: [{ address: '10.0.0.1/24' }], routes: [{ dst: '0.0.0.0/0', gw: 'fd00::1' }] },
      'ipam.routes[0].gw',
    ],
    [
      'DNS nameserver not an IP',
      { addresses: [{ address: '10.0.0.1/24' }], dns: { nameservers: ['dns.example'] } },
      'ipam.dns.nameservers[0]',
    ],
  ])('invalid config (%s): code 7 naming the field', async (_what, ipam, field) => {
    const r = await call('ADD', { cniVersion: '1.0.0', name: 'statictest', ipam: { type: 'static', ...ipam } });
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 7 });
    expect(String(r.json?.msg)).toContain(field);
  });
  it('invalid config: no ipam section, bad runtimeConfig.ips, two IPv4 addresses in 0.2.0', async () => {
    let r = await call('ADD', { cniVersion: '1.0.0', name: 'statictest' });
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('ipam') });
    r = await call('ADD', netconf('1.0.0', DUAL, { runtimeConfig: { ips: ['10.1.1.1/33'] } }));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('runtimeConfig.ips[0]') });
    r = await call('ADD', netconf('0.2.0', { addresses: [{ address: '10.0.0.1/24' }, { address: '10.0.1.1/24' }] }));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('ipam.addresses[1]') });
  });
  it('invalid CNI_ARGS IP or GATEWAY: code 4 naming the field', async () => {
    let r = await call('ADD', netconf('1.0.0'), { args: 'IP=10.0.0.999/24' });
    expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('IP') });
    r = await call('ADD', netconf('1.0.0'), { args: 'GATEWAY=172.31.0.1' });
    expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('GATEWAY') });
  });
  it('DEL succeeds, twice, and with CNI_NETNS empty', async () => {
    for (const netns of [ns.path, ns.path, '']) {
      const r = await call('DEL', netconf('1.1.0'), { netns });
      expect(r.exitCode, r.stdout).toBe(0);
      expect(r.stdout).toBe('');
    }
  });
  it('DEL does not fail on what only ADD needs (no addresses, gateway family)', async () => {
    for (const ipam of [{}, { addresses: [{ address: '10.0.0.1/24', gateway: 'fd00::1' }] }]) {
      const r = await call('DEL', netconf('1.1.0', ipam));
      expect(r.exitCode, r.stdout).toBe(0);
    }
  });
  it('CHECK: refuses a missing prevResult (7), passes with the ADD result, fails on a mismatch, validates config', async () => {
    const add = await call('ADD', netconf('1.0.0'));
    let r = await call('CHECK', netconf('1.0.0'));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('prevResult') });
    r = await call('CHECK', netconf('1.0.0', DUAL, { prevResult: add.json }));
    expect(r.exitCode, r.stdout).toBe(0);
    const other = { ...(add.json as object), ips: [{ address: '10.10.0.5/24', gateway: '10.10.0.99' }] };
    r = await call('CHECK', netconf('1.0.0', DUAL, { prevResult: other }));
    expect(r.json).toMatchObject({ code: 105 });
    r = await call('CHECK', netconf('1.0.0', { addresses: [{ address: 'x' }] }, { prevResult: add.json }));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('ipam.addresses[0].address') });
  });
  it('GC and STATUS succeed with no output', async () => {
    const gc = await runPlugin('static', { command: 'GC', config: netconf('1.1.0', DUAL, { 'cni.dev/valid-attachments': [] }) });
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(gc.stdout).toBe('');
    const st = await runPlugin('static', { command: 'STATUS', config: netconf('1.1.0') });
    expect(st.exitCode, st.stdout).toBe(0);
    expect(st.stdout).toBe('');
  });
  it('as the IPAM of the reference bridge: its address and gateway land on eth0, the bridge applies the MAC', async () => {
    const ctNs = await makeNetns(cleanup, 'cnits-static');
    const br = uid('cnbr');
    cleanup.add(() => sh('ip', ['link', 'del', br], { allowFail: true }));
    const config = {
      cniVersion: '1.0.0',
      name: 'statictest',
      type: 'bridge',
      bridge: br,
      capabilities: { ips: true, mac: true },
      ipam: { type: 'static', addresses: [{ address: '10.123.0.5/24', gateway: '10.123.0.1' }], routes: [{ dst: '10.124.0.0/16' }] },
      runtimeConfig: { ips: ['10.123.0.77'], mac: '02:12:34:56:78:9a' },
    };
    const run = (command: string) =>
      runPlugin('bridge', { command, containerId: ctr, netns: ctNs.path, ifname: 'eth0', config, binDir: REF_BIN, path: BIN });
    const add = await run('ADD');
    cleanup.add(() => run('DEL'));
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json?.ips).toEqual([{ interface: 2, address: '10.123.0.77/24', gateway: '10.123.0.1' }]);
    const eth0 = JSON.parse((await inNs(ctNs, 'ip', ['-json', 'addr', 'show', 'dev', 'eth0'])).stdout) as Array<{
      address: string;
      addr_info: Array<{ local: string; prefixlen: number }>;
    }>;
    expect(eth0[0].address).toBe('02:12:34:56:78:9a');
    expect(eth0[0].addr_info.some((a) => a.local === '10.123.0.77' && a.prefixlen === 24)).toBe(true);
    expect((await inNs(ctNs, 'ip', ['route', 'show', '10.124.0.0/16'])).stdout).toContain('via 10.123.0.1 dev eth0');
    const del = await run('DEL');
    expect(del.exitCode, del.stdout).toBe(0);
  });
  it('stores nothing: no verb makes a file-writing system call (strace)', async () => {
    const trace = `/tmp/${uid('ht')}-static.strace`;
    cleanup.add(async () => rmSync(trace, { force: true }));
    const writes =
      /^\d+ +(?:(?:open|openat|openat2|creat)\(.*(?:O_WRONLY|O_RDWR|O_CREAT|O_TRUNC)|(?:mkdir|mkdirat|unlink|unlinkat|rmdir|rename|renameat|renameat2|link|linkat|symlink|symlinkat|truncate|chmod|fchmodat|chown|lchown|fchownat|utimensat|mknod|mknodat)\()/m;
    const add = await call('ADD', netconf('1.1.0'));
    for (const [verb, config] of [
      ['ADD', netconf('1.1.0')],
      ['CHECK', netconf('1.1.0', DUAL, { prevResult: add.json })],
      ['DEL', netconf('1.1.0')],
      ['GC', netconf('1.1.0', DUAL, { 'cni.dev/valid-attachments': [] })],
      ['STATUS', netconf('1.1.0')],
    ] as const) {
      const r = await call(verb, config, { wrap: ['strace', '-f', '-qq', '-e', 'trace=%file', '-e', 'status=successful', '-o', trace] });
      expect(r.exitCode, `${verb}: ${r.stdout}${r.stderr}`).toBe(0);
      const log = readFileSync(trace, 'utf8');
      expect(log, 'strace recorded the run').toMatch(/execve\(/);
      expect(
        log.split('\n').filter((l) => writes.test(l)),
        `${verb} wrote to the filesystem`,
      ).toEqual([]);
    }
  });
});
