/**
 * tuning (chained after ptp) against the real kernel and the Go reference. Every "host" is a
 * test netns (the plugins run in it through nsenter), every container another.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { REF_BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { checkAllowlist, parseAllowlist, resolveTuning, sysctlPath } from '../plugins/tuning/config.ts';

const PREFIX = 'hr';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

interface Pod {
  host: TestNetns;
  ns: TestNetns;
  id: string;
  res: Record<string, unknown>;
  dataDir: string;
  name: string;
}

const octet = (): number => 1 + (randomBytes(1)[0] % 250);

/** A container attached by ptp (ours, or the reference's with `refPtp`) in a fresh test host netns. */
async function pod(refPtp = false): Promise<Pod> {
  const host = await makeNetns(cleanup, PREFIX);
  const ns = await makeNetns(cleanup, PREFIX);
  const dataDir = `/tmp/${uid(PREFIX)}`;
  cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
  const name = uid(PREFIX);
  const id = uid(PREFIX);
  const ptp = {
    cniVersion: '1.0.0',
    name,
    type: 'ptp',
    mtu: 1400,
    ipam: { type: 'host-local', subnet: `10.${octet()}.${octet()}.0/24`, dataDir: `${dataDir}/ipam` },
  };
  const bin = refPtp ? { binDir: REF_BIN, path: REF_BIN } : {};
  const r = await runPlugin('ptp', {
    command: 'ADD',
    containerId: id,
    netns: ns.path,
    ifname: 'eth0',
    config: ptp,
    hostNetns: host.path,
    ...bin,
  });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  cleanup.add(() =>
    runPlugin('ptp', { command: 'DEL', containerId: id, netns: ns.path, ifname: 'eth0', config: ptp, hostNetns: host.path, ...bin }),
  );
  return { host, ns, id, res: r.json!, dataDir, name };
}

async function tuning(
  p: Pod,
  command: string,
  extra: Record<string, unknown>,
  opts: { ref?: boolean; netns?: string } = {},
): Promise<PluginRun> {
  const config = { cniVersion: '1.0.0', name: p.name, type: 'tuning', dataDir: `${p.dataDir}/tuning`, prevResult: p.res, ...extra };
  return runPlugin('tuning', {
    command,
    containerId: p.id,
    netns: opts.netns ?? p.ns.path,
    ifname: 'eth0',
    config,
    hostNetns: p.host.path,
    ...(opts.ref ? { binDir: REF_BIN, path: REF_BIN } : {}),
  });
}

interface LinkState {
  mtu: number;
  address: string;
  flags: string[];
  txqlen: number;
  ifalias?: string;
}
async function link(p: Pod): Promise<LinkState> {
  return (JSON.parse((await inNs(p.ns, 'ip', ['-j', 'link', 'show', 'dev', 'eth0'])).stdout) as LinkState[])[0];
}
const sysctl = async (p: Pod, key: string): Promise<string> => (await inNs(p.ns, 'sysctl', ['-n', key])).stdout.trim();
const backupPath = (p: Pod): string => `${p.dataDir}/tuning/${p.id}_eth0.json`;

const FULL = {
  sysctl: { 'net.ipv4.conf.IFNAME.rp_filter': '2', 'net.ipv4.conf.eth0.arp_ignore': '1' },
  mtu: 1300,
  promisc: true,
  allmulti: true,
  txQLen: 77,
  alias: 'hr pod eth0',
  runtimeConfig: { mac: '02:aa:bb:cc:dd:ee' },
};

describe('tuning: config (pure)', () => {
  it('resolves sysctl keys to net/ paths, refuses others naming the key, applies the reference overrides', () => {
    expect(sysctlPath('net.ipv4.conf.IFNAME.rp_filter', 'eth1')).toBe('net/ipv4/conf/eth1/rp_filter');
    expect(sysctlPath('net/ipv4/conf/eth0.100/rp_filter', 'x')).toBe('net/ipv4/conf/eth0.100/rp_filter');
    for (const bad of ['kernel.hostname', 'net/../kernel/hostname', 'net..ipv4', 'net.ipv4.ip_forward=1', 'net', 'vm.swappiness']) {
      expect(() => sysctlPath(bad, 'eth0'), bad).toThrow(
        expect.objectContaining({ code: 7, message: expect.stringContaining(bad) }) as Error,
      );
    }
    const s = resolveTuning(
      { name: 'n', mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:02' }, args: { cni: { mtu: 1234 } }, mtu: 1500 },
      { args: new Map([['MAC', '02:00:00:00:00:03']]), ifname: 'eth0' },
    );
    expect([s.mac, s.mtu, s.dataDir]).toEqual(['02:00:00:00:00:02', 1234, '/run/cni/tuning']);
    expect(() => resolveTuning({ name: 'n', mac: 'zz' }, { args: new Map(), ifname: 'eth0' })).toThrow(/not a MAC/);
    checkAllowlist(['net.ipv4.conf.eth0.rp_filter'], parseAllowlist('^net\\.ipv4\\.conf\\..*\n\n'));
    expect(() => checkAllowlist(['net.core.somaxconn'], parseAllowlist('^net\\.ipv4\\.conf\\..*'))).toThrow(
      /net.core.somaxconn.*allowlist/,
    );
    checkAllowlist(['net.core.somaxconn'], parseAllowlist(undefined));
  });
});

describe('tuning: kernel', () => {
  it('ADD sets every attribute and sysctl and passes the result on with the MAC; DEL restores the originals and its backup; repeated and netns-less DEL succeed', async () => {
    const p = await pod();
    const before = await link(p);
    const rpBefore = await sysctl(p, 'net.ipv4.conf.eth0.rp_filter');
    const r = await tuning(p, 'ADD', FULL);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const want = structuredClone(p.res) as { interfaces: Array<{ name: string; mac: string; sandbox?: string }> };
    want.interfaces[1].mac = '02:aa:bb:cc:dd:ee';
    expect(r.json).toEqual(want);
    const l = await link(p);
    expect([l.mtu, l.address, l.txqlen, l.ifalias]).toEqual([1300, '02:aa:bb:cc:dd:ee', 77, 'hr pod eth0']);
    expect(l.flags).toEqual(expect.arrayContaining(['PROMISC', 'ALLMULTI']));
    expect([await sysctl(p, 'net.ipv4.conf.eth0.rp_filter'), await sysctl(p, 'net.ipv4.conf.eth0.arp_ignore')]).toEqual(['2', '1']);
    expect(JSON.parse(readFileSync(backupPath(p), 'utf8'))).toEqual({
      mac: before.address,
      promisc: false,
      mtu: 1400,
      allmulti: false,
      txQLen: before.txqlen,
      alias: '',
    });
    const d = await tuning(p, 'DEL', FULL);
    expect(d.exitCode, d.stdout + d.stderr).toBe(0);
    const after = await link(p);
    expect([after.mtu, after.address, after.txqlen, after.ifalias ?? '']).toEqual([1400, before.address, before.txqlen, '']);
    expect(after.flags).not.toContain('PROMISC');
    expect(after.flags).not.toContain('ALLMULTI');
    expect(existsSync(backupPath(p))).toBe(false);
    // sysctls stay (the reference does not restore them either: they live and die with the netns)
    expect(rpBefore).not.toBe('2');
    expect((await tuning(p, 'DEL', FULL)).exitCode).toBe(0);
    expect((await tuning(p, 'DEL', FULL, { netns: '' })).exitCode).toBe(0);
  });

  it('refuses sysctls outside net.* and path traversal with code 7 naming the key, before changing anything', async () => {
    const p = await pod();
    const before = await link(p);
    for (const key of ['kernel.hostname', 'net/../kernel/hostname']) {
      const r = await tuning(p, 'ADD', { mtu: 1200, sysctl: { [key]: 'x' } });
      expect(r.exitCode).not.toBe(0);
      expect(r.json).toMatchObject({ code: 7 });
      expect(String(r.json?.msg)).toContain(key);
    }
    expect((await link(p)).mtu).toBe(before.mtu);
    expect(existsSync(backupPath(p))).toBe(false);
  });

  it('a failed ADD puts back the sysctls and attributes it changed and leaves no backup', async () => {
    const p = await pod();
    const before = await link(p);
    const rp = await sysctl(p, 'net.ipv4.conf.eth0.rp_filter');
    const r = await tuning(p, 'ADD', {
      sysctl: { 'net.ipv4.conf.eth0.rp_filter': rp === '2' ? '1' : '2' },
      mtu: 1250,
      mac: '01:00:5e:00:00:01',
    });
    expect(r.exitCode).not.toBe(0);
    expect(await sysctl(p, 'net.ipv4.conf.eth0.rp_filter')).toBe(rp);
    const l = await link(p);
    expect([l.mtu, l.address]).toEqual([before.mtu, before.address]);
    expect(existsSync(backupPath(p))).toBe(false);
  });

  it('CHECK passes after ADD and detects drift of a sysctl, the MTU, promisc and the alias', async () => {
    const p = await pod();
    const res = await tuning(p, 'ADD', FULL);
    expect(res.exitCode).toBe(0);
    const chk = (): Promise<PluginRun> => tuning(p, 'CHECK', { ...FULL, prevResult: res.json });
    expect((await chk()).exitCode).toBe(0);
    const drift = async (breakIt: string[], fixIt: string[], msg: RegExp): Promise<void> => {
      await inNs(p.ns, breakIt[0], breakIt.slice(1));
      const r = await chk();
      expect(r.json).toMatchObject({ code: 105 });
      expect(String(r.json?.msg)).toMatch(msg);
      await inNs(p.ns, fixIt[0], fixIt.slice(1));
      expect((await chk()).exitCode).toBe(0);
    };
    await drift(['sysctl', '-w', 'net.ipv4.conf.eth0.rp_filter=0'], ['sysctl', '-w', 'net.ipv4.conf.eth0.rp_filter=2'], /rp_filter/);
    await drift(['ip', 'link', 'set', 'dev', 'eth0', 'mtu', '1280'], ['ip', 'link', 'set', 'dev', 'eth0', 'mtu', '1300'], /MTU/);
    await drift(
      ['ip', 'link', 'set', 'dev', 'eth0', 'promisc', 'off'],
      ['ip', 'link', 'set', 'dev', 'eth0', 'promisc', 'on'],
      /promiscuous/,
    );
    await drift(
      ['ip', 'link', 'set', 'dev', 'eth0', 'alias', 'other'],
      ['ip', 'link', 'set', 'dev', 'eth0', 'alias', 'hr pod eth0'],
      /alias/,
    );
    expect((await tuning(p, 'DEL', FULL)).exitCode).toBe(0);
  });

  it('interop: same result as the reference; each restores what the other saved; our tuning after the reference ptp', async () => {
    // the installed reference (1.1.1) has no txQLen/alias: compare on the keys it knows
    const conf = { sysctl: { 'net.ipv4.conf.eth0.rp_filter': '2' }, mtu: 1300, promisc: true, allmulti: true, mac: '02:aa:bb:cc:dd:01' };
    const ours = await pod();
    const theirs = await pod(true);
    const oBefore = await link(ours);
    const tBefore = await link(theirs);
    const a = await tuning(ours, 'ADD', conf);
    const b = await tuning(theirs, 'ADD', conf, { ref: true });
    expect(a.exitCode, a.stderr).toBe(0);
    expect(b.exitCode, b.stderr).toBe(0);
    const strip = (p: Pod, j: unknown): unknown =>
      JSON.parse(
        JSON.stringify(j)
          .replaceAll(p.ns.path, 'NS')
          .replace(/"name":"veth[0-9a-f]+","mac":"[0-9a-f:]+"/, '"name":"HOST","mac":"M"')
          .replace(/"address":"10\.\d+\.\d+\./g, '"address":"10.X.')
          .replace(/"gateway":"10\.\d+\.\d+\./g, '"gateway":"10.X.'),
      );
    expect(strip(ours, { ...a.json, dns: undefined })).toEqual(strip(theirs, { ...b.json, dns: undefined }));
    expect(JSON.parse(readFileSync(backupPath(ours), 'utf8'))).toEqual(
      JSON.parse(readFileSync(backupPath(theirs), 'utf8').replace(tBefore.address, oBefore.address)),
    );
    // the reference restores our backup, ours restores the reference's
    expect((await tuning(ours, 'DEL', conf, { ref: true })).exitCode).toBe(0);
    expect((await tuning(theirs, 'DEL', conf)).exitCode).toBe(0);
    for (const [p, before] of [
      [ours, oBefore],
      [theirs, tBefore],
    ] as const) {
      const l = await link(p);
      expect([l.mtu, l.address, l.flags.includes('PROMISC'), l.flags.includes('ALLMULTI')]).toEqual([
        before.mtu,
        before.address,
        false,
        false,
      ]);
      expect(existsSync(backupPath(p))).toBe(false);
    }
    // our CHECK accepts the reference's ADD, the reference's CHECK ours
    const c = await tuning(theirs, 'ADD', conf, { ref: true });
    expect((await tuning(theirs, 'CHECK', { ...conf, prevResult: c.json })).exitCode).toBe(0);
    const o = await tuning(ours, 'ADD', conf);
    const rc = await tuning(ours, 'CHECK', { ...conf, prevResult: o.json }, { ref: true });
    expect(rc.exitCode, rc.stdout + rc.stderr).toBe(0);
  });
});
