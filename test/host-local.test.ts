/**
 * host-local, black box: the built executable run as a runtime runs it, a per-test dataDir
 * under /var/lib/cni/cnits-test-<uid>, removed afterwards. Interop with the Go reference
 * /usr/lib/cni/host-local on the same store.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Plugin } from '../shared/cni/plugin.ts';
import { invoke } from '../shared/cni/skel.ts';
import type { NetConfBase } from '../shared/cni/types.ts';
import { Cleanup, makeNetns, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';

const VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const REF = path.join(REF_BIN, 'host-local');

const suite = new Cleanup();
const cleanup = new Cleanup();
let ns: TestNetns;
let dataDir: string;
let net: string;

beforeAll(async () => {
  ns = await makeNetns(suite, 'cnits-hl');
});
afterAll(() => suite.run());
afterEach(() => cleanup.run());

/** A fresh dataDir and network name per test. */
function fresh(): void {
  const id = uid('');
  dataDir = `/var/lib/cni/cnits-test-${id}`;
  net = `cnits-hl-${id}`;
  const d = dataDir;
  cleanup.add(async () => rmSync(d, { recursive: true, force: true }));
}

type Obj = Record<string, unknown>;
function conf(ipam: Obj = {}, extra: Obj = {}, cniVersion = '1.1.0'): Obj {
  return { cniVersion, name: net, ...extra, ipam: { type: 'host-local', dataDir, ...ipam } };
}
const V4 = { subnet: '10.201.0.0/24' };

interface Opts {
  id?: string;
  ifname?: string;
  netns?: string | null;
  args?: string;
  env?: Record<string, string | undefined>;
  binDir?: string;
}
function hl(command: string, config: unknown, o: Opts = {}, name = 'host-local'): Promise<PluginRun> {
  return runPlugin(name, {
    command,
    containerId: command === 'GC' || command === 'STATUS' ? undefined : (o.id ?? 'ctr1'),
    ifname: command === 'GC' || command === 'STATUS' ? undefined : (o.ifname ?? 'eth0'),
    netns: o.netns === null ? undefined : (o.netns ?? ns.path),
    args: o.args,
    config,
    env: o.env,
    binDir: o.binDir,
  });
}
const ref = (command: string, config: unknown, o: Opts = {}): Promise<PluginRun> => hl(command, config, { ...o, binDir: REF_BIN });

function ok(r: PluginRun): Obj {
  expect(r.exitCode, `${r.stdout} ${r.stderr}`).toBe(0);
  return r.json ?? {};
}
function failsWith(r: PluginRun, code: number, text?: string): void {
  expect(r.exitCode, r.stdout).toBe(1);
  expect(r.json?.code, r.stdout).toBe(code);
  if (text) expect(`${String(r.json?.msg)} ${String(r.json?.details ?? '')}`).toContain(text);
}
const addresses = (res: Obj): string[] => ((res.ips as Obj[] | undefined) ?? []).map((i) => String(i.address));
const storeDirOf = (): string => path.join(dataDir, net);
const files = (): string[] => (existsSync(storeDirOf()) ? readdirSync(storeDirOf()).sort() : []);
const ipFiles = (): string[] =>
  files().filter((f) => /^[0-9a-f.:]+$/.test(f) && (f.includes('.') || f.includes(':')) && !f.startsWith('last'));
const content = (ip: string): string => readFileSync(path.join(storeDirOf(), ip), 'utf8');

describe('host-local: result shapes for every spec version', () => {
  it.each(VERSIONS)('%s: ADD dual-stack, CHECK, DEL', async (v) => {
    fresh();
    const c = conf(
      { ranges: [[V4], [{ subnet: 'fd00:201::/64' }]], routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd00:201::1' }] },
      {},
      v,
    );
    const res = ok(await hl('ADD', c));
    expect(res.cniVersion).toBe(v);
    expect(res.interfaces).toBeUndefined();
    if (v === '0.1.0' || v === '0.2.0') {
      expect(res.ip4).toEqual({ ip: '10.201.0.2/24', gateway: '10.201.0.1', routes: [{ dst: '0.0.0.0/0' }] });
      expect(res.ip6).toEqual({ ip: 'fd00:201::2/64', gateway: 'fd00:201::1', routes: [{ dst: '::/0', gw: 'fd00:201::1' }] });
      expect(res.ips).toBeUndefined();
    } else {
      const withVersion = v.startsWith('0.');
      expect(res.ips).toEqual([
        { ...(withVersion ? { version: '4' } : {}), address: '10.201.0.2/24', gateway: '10.201.0.1' },
        { ...(withVersion ? { version: '6' } : {}), address: 'fd00:201::2/64', gateway: 'fd00:201::1' },
      ]);
      expect(res.routes).toEqual([{ dst: '0.0.0.0/0' }, { dst: '::/0', gw: 'fd00:201::1' }]);
    }
    expect(content('10.201.0.2')).toBe('ctr1\r\neth0');
    expect(content('fd00:201::2')).toBe('ctr1\r\neth0');
    if (v === '0.4.0' || v >= '1') ok(await hl('CHECK', { ...c, prevResult: res }));
    ok(await hl('DEL', c));
    expect(ipFiles()).toEqual([]);
  });
});

describe('host-local: verbs', () => {
  it('VERSION lists every version', async () => {
    const r = ok(await runPlugin('host-local', { command: 'VERSION', config: { cniVersion: '1.1.0' } }));
    expect(r.supportedVersions).toEqual(VERSIONS);
  });

  it('rangeStart/rangeEnd bound the pool; gateway inside it is skipped; exhaustion is code 103 and STATUS 50', async () => {
    fresh();
    const c = conf({ subnet: '10.202.0.0/24', rangeStart: '10.202.0.10', rangeEnd: '10.202.0.13', gateway: '10.202.0.11' });
    ok(await hl('STATUS', c));
    const got: string[] = [];
    for (let i = 0; i < 3; i++) got.push(...addresses(ok(await hl('ADD', c, { id: `c${i}` }))));
    expect(got).toEqual(['10.202.0.10/24', '10.202.0.12/24', '10.202.0.13/24']);
    for (const r of ok(await hl('ADD', conf({ subnet: '10.203.0.0/24' }, { name: `${net}-b` }), { id: 'cx' })).ips as Obj[])
      expect(r.gateway).toBe('10.203.0.1');
    failsWith(await hl('ADD', c, { id: 'c9' }), 103, 'no IP addresses available');
    expect(ipFiles()).toHaveLength(3);
    failsWith(await hl('STATUS', c), 50, 'exhausted');
    ok(await hl('DEL', c, { id: 'c1' }));
    ok(await hl('STATUS', c));
    expect(addresses(ok(await hl('ADD', c, { id: 'c9' })))).toEqual(['10.202.0.12/24']);
  });

  it('allocates round robin: a released address is not handed out again until the pool wraps', async () => {
    fresh();
    const c = conf({ subnet: '10.204.0.0/29' }); // .2-.6 allocatable
    expect(addresses(ok(await hl('ADD', c, { id: 'a' })))).toEqual(['10.204.0.2/29']);
    expect(addresses(ok(await hl('ADD', c, { id: 'b' })))).toEqual(['10.204.0.3/29']);
    ok(await hl('DEL', c, { id: 'a' }));
    expect(addresses(ok(await hl('ADD', c, { id: 'c' })))).toEqual(['10.204.0.4/29']);
    expect(readFileSync(path.join(storeDirOf(), 'last_reserved_ip.0'), 'utf8')).toBe('10.204.0.4');
    expect(addresses(ok(await hl('ADD', c, { id: 'd' })))).toEqual(['10.204.0.5/29']);
    expect(addresses(ok(await hl('ADD', c, { id: 'e' })))).toEqual(['10.204.0.6/29']);
    expect(addresses(ok(await hl('ADD', c, { id: 'f' })))).toEqual(['10.204.0.2/29']);
  });

  it('a repeated ADD of one attachment returns its addresses; another ifname gets new ones', async () => {
    fresh();
    const c = conf({ ranges: [[V4], [{ subnet: 'fd00:201::/64' }]] });
    const first = addresses(ok(await hl('ADD', c)));
    expect(addresses(ok(await hl('ADD', c)))).toEqual(first);
    expect(ipFiles()).toHaveLength(2);
    const second = addresses(ok(await hl('ADD', c, { ifname: 'net1' })));
    expect(second).toEqual(['10.201.0.3/24', 'fd00:201::3/64']);
    expect(content('10.201.0.3')).toBe('ctr1\r\nnet1');
    // asking for a different address than the one held is a conflict, and changes nothing
    failsWith(await hl('ADD', conf({ ranges: [[V4]] }, { args: { cni: { ips: ['10.201.0.50'] } } })), 102, 'already holds 10.201.0.2');
    ok(await hl('DEL', c));
    expect(ipFiles()).toEqual(['10.201.0.3', 'fd00:201::3']);
  });

  it('DEL is idempotent, works with an empty CNI_NETNS and without a store', async () => {
    fresh();
    const c = conf(V4);
    ok(await hl('DEL', c, { netns: null }));
    expect(existsSync(storeDirOf())).toBe(false);
    ok(await hl('ADD', c));
    ok(await hl('DEL', c, { netns: null }));
    expect(ipFiles()).toEqual([]);
    ok(await hl('DEL', c, { netns: null }));
    ok(await hl('DEL', c));
    // DEL needs only the store location: a config whose ranges became invalid still releases
    ok(await hl('ADD', c));
    ok(await hl('DEL', conf({ subnet: '10.201.0.0/31' }), { netns: null }));
    expect(ipFiles()).toEqual([]);
  });

  it('CHECK fails when the attachment lost its reservation or prevResult differs', async () => {
    fresh();
    const c = conf(V4);
    const res = ok(await hl('ADD', c));
    ok(await hl('CHECK', { ...c, prevResult: res }));
    failsWith(
      await hl('CHECK', { ...c, prevResult: { cniVersion: '1.1.0', ips: [{ address: '10.201.0.99/24' }] } }),
      105,
      '10.201.0.99/24',
    );
    failsWith(await hl('CHECK', { ...c, prevResult: res }, { ifname: 'eth9' }), 105, 'no address');
    rmSync(path.join(storeDirOf(), '10.201.0.2'));
    failsWith(await hl('CHECK', { ...c, prevResult: res }), 105);
  });

  it('GC releases every allocation not in cni.dev/valid-attachments or cni.dev/attachments', async () => {
    fresh();
    const c = conf({ ranges: [[V4], [{ subnet: 'fd00:201::/64' }]] });
    for (const [id, ifname] of [
      ['a', 'eth0'],
      ['b', 'eth0'],
      ['c', 'eth0'],
      ['a', 'net1'],
    ])
      ok(await hl('ADD', c, { id, ifname }));
    expect(ipFiles()).toHaveLength(8);
    writeFileSync(path.join(storeDirOf(), '10.201.0.200'), 'legacy'); // an old-format file: container ID only
    ok(
      await hl('GC', {
        ...c,
        'cni.dev/valid-attachments': [{ containerID: 'a', ifname: 'eth0' }],
        'cni.dev/attachments': [{ containerID: 'c', ifname: 'eth0' }],
      }),
    );
    expect(ipFiles().map(content).sort()).toEqual(['a\r\neth0', 'a\r\neth0', 'c\r\neth0', 'c\r\neth0']);
    ok(await hl('GC', { ...c, 'cni.dev/valid-attachments': [] }));
    expect(ipFiles()).toEqual([]);
    expect(files().filter((f) => f.startsWith('.cnits-tmp'))).toEqual([]);
  });

  it('GC removes leftovers of writers that died (old temporaries, old empty files), not fresh ones', async () => {
    fresh();
    const c = conf(V4);
    ok(await hl('ADD', c));
    const old = new Date(Date.now() - 3600_000);
    for (const f of ['.cnits-tmp.1.dead', '10.201.0.77']) {
      writeFileSync(path.join(storeDirOf(), f), '');
      utimesSync(path.join(storeDirOf(), f), old, old);
    }
    writeFileSync(path.join(storeDirOf(), '10.201.0.78'), ''); // being written right now by someone
    ok(await hl('GC', { ...c, 'cni.dev/valid-attachments': [{ containerID: 'ctr1', ifname: 'eth0' }] }));
    expect(files().filter((f) => f !== 'lock' && !f.startsWith('last_'))).toEqual(['10.201.0.2', '10.201.0.78']);
  });

  it('STATUS fails with code 50 when the store cannot be created', async () => {
    fresh();
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(path.join(dataDir, 'afile'), 'x');
    failsWith(await hl('STATUS', conf({ ...V4, dataDir: path.join(dataDir, 'afile', 'sub') })), 50, 'not usable');
    ok(await hl('STATUS', conf(V4)));
  });

  it('STATUS fails with code 50 when the store is not writable (immutable directory)', async (ctx) => {
    fresh();
    mkdirSync(storeDirOf(), { recursive: true });
    const dir = storeDirOf();
    cleanup.add(() => execa('chattr', ['-i', dir], { reject: false }));
    const r = await execa('chattr', ['+i', dir], { reject: false });
    if (r.exitCode !== 0) {
      console.log(`skipped: chattr +i not possible here: ${String(r.stderr)}`);
      ctx.skip(`chattr +i not possible here (e.g. overlayfs in a chroot): ${String(r.stderr).trim()}`);
    }
    failsWith(await hl('STATUS', conf(V4)), 50, 'not usable');
    failsWith(await hl('ADD', conf(V4)), 5);
    await execa('chattr', ['-i', dir]);
    ok(await hl('STATUS', conf(V4)));
  });

  it('reads resolvConf into the dns of the result', async () => {
    fresh();
    mkdirSync(dataDir, { recursive: true });
    const rc = path.join(dataDir, 'resolv.conf');
    writeFileSync(rc, '# test\nnameserver 10.201.0.53\nsearch a.test b.test\ndomain a.test\noptions ndots:2\n');
    const res = ok(await hl('ADD', conf({ ...V4, resolvConf: rc })));
    expect(res.dns).toEqual({ nameservers: ['10.201.0.53'], domain: 'a.test', search: ['a.test', 'b.test'], options: ['ndots:2'] });
    failsWith(await hl('ADD', conf({ ...V4, resolvConf: path.join(dataDir, 'missing') }), { id: 'x' }), 5, 'ipam.resolvConf');
  });
});

describe('host-local: requested addresses', () => {
  const c2 = (): Obj => conf({ ranges: [[V4], [{ subnet: 'fd00:201::/64' }]] });
  it('args.cni.ips, runtimeConfig.ips (with prefix) and CNI_ARGS IP', async () => {
    fresh();
    expect(addresses(ok(await hl('ADD', { ...c2(), args: { cni: { ips: ['10.201.0.40', 'fd00:201::40'] } } }, { id: 'a' })))).toEqual([
      '10.201.0.40/24',
      'fd00:201::40/64',
    ]);
    expect(
      addresses(ok(await hl('ADD', { ...c2(), capabilities: { ips: true }, runtimeConfig: { ips: ['10.201.0.41/24'] } }, { id: 'b' }))),
    ).toEqual([
      '10.201.0.41/24',
      'fd00:201::41/64', // a requested address also moves the round robin cursor (as the reference does)
    ]);
    expect(addresses(ok(await hl('ADD', c2(), { id: 'c', args: 'IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.201.0.42' })))).toEqual([
      '10.201.0.42/24',
      'fd00:201::42/64',
    ]);
    // CNI_ARGS IP is ignored when args.cni.ips is given (conventions)
    expect(
      addresses(ok(await hl('ADD', { ...c2(), args: { cni: { ips: ['10.201.0.43'] } } }, { id: 'd', args: 'IP=10.201.0.44' })))[0],
    ).toBe('10.201.0.43/24');
    expect(content('10.201.0.42')).toBe('c\r\neth0');
  });

  it('taken → 102, gateway → 102, outside every range → 7 / 4; a failure releases what it took', async () => {
    fresh();
    ok(await hl('ADD', { ...c2(), args: { cni: { ips: ['fd00:201::40'] } } }, { id: 'a' }));
    const before = ipFiles();
    failsWith(
      await hl('ADD', { ...c2(), args: { cni: { ips: ['10.201.0.50', 'fd00:201::40'] } } }, { id: 'b' }),
      102,
      'fd00:201::40 is already allocated to a',
    );
    expect(ipFiles()).toEqual(before); // 10.201.0.50 taken for range set 0 was released
    failsWith(await hl('ADD', { ...c2(), runtimeConfig: { ips: ['10.201.0.1'] } }, { id: 'b' }), 102, 'gateway');
    failsWith(await hl('ADD', { ...c2(), runtimeConfig: { ips: ['10.99.0.5'] } }, { id: 'b' }), 7, 'runtimeConfig.ips[0]');
    failsWith(await hl('ADD', c2(), { id: 'b', args: 'IP=10.99.0.5' }), 4, 'CNI_ARGS');
    failsWith(await hl('ADD', { ...c2(), args: { cni: { ips: ['bogus'] } } }, { id: 'b' }), 7, 'args.cni.ips[0]');
    expect(ipFiles()).toEqual(before);
  });
});

describe('host-local: invalid configs (code 7 naming the field)', () => {
  it.each([
    [{ ipam: undefined }, 'ipam'],
    [{ ipam: { type: 'host-local' } }, 'ipam.ranges'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/33' } }, 'ipam.subnet'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/32' } }, 'ipam.subnet'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/24', rangeStart: '10.0.1.5' } }, 'ipam.rangeStart'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/24', rangeEnd: '10.0.1.5' } }, 'ipam.rangeEnd'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/24', gateway: '10.9.0.1' } }, 'ipam.gateway'],
    [{ ipam: { type: 'host-local', ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: 'fd00::/64' }]] } }, 'ipam.ranges[0][1].subnet'],
    [{ ipam: { type: 'host-local', ranges: [[{ subnet: '10.0.0.0/24' }, { subnet: '10.0.0.64/26' }]] } }, 'ipam.ranges[0][1]'],
    [{ ipam: { type: 'host-local', ranges: [[{ subnet: '10.0.0.0/24' }], [{ subnet: '10.0.0.0/16' }]] } }, 'ipam.ranges[1]'],
    [{ ipam: { type: 'host-local', ranges: [[{ rangeStart: '10.0.0.1' }]] } }, 'ipam.ranges[0][0].subnet'],
    [{ ipam: { type: 'host-local', ranges: [[]] } }, 'ipam.ranges[0]'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/24', routes: [{ dst: 'x' }] } }, 'ipam.routes[0].dst'],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/24', dataDir: 'relative' } }, 'ipam.dataDir'],
    [
      { ipam: { type: 'host-local', subnet: '10.0.0.0/24' }, runtimeConfig: { ipRanges: [[{ subnet: 'nope' }]] } },
      'runtimeConfig.ipRanges[0][0].subnet',
    ],
    [{ ipam: { type: 'host-local', subnet: '10.0.0.0/24' }, runtimeConfig: { ips: 'x' } }, 'runtimeConfig.ips'],
  ])('%j → %s', async (over, field) => {
    fresh();
    const c: Obj = { cniVersion: '1.1.0', name: net, ...over };
    const ipam = c.ipam as Obj | undefined;
    if (ipam && ipam.dataDir === undefined) ipam.dataDir = dataDir;
    if (ipam === undefined) delete c.ipam;
    failsWith(await hl('ADD', c), 7, `${field}:`);
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe('host-local: path tricks never reach outside dataDir', () => {
  it('network names and container IDs with .., /, NUL are refused; a planted symlink is refused', async () => {
    fresh();
    // dataDir is <base>/store and "outside" is <base>/outside, so <base> shows any escape
    const base = dataDir;
    dataDir = path.join(base, 'store');
    const outside = path.join(base, 'outside');
    mkdirSync(outside, { recursive: true });
    mkdirSync(dataDir, { recursive: true });
    const parent = readdirSync(base).sort();
    for (const name of ['..', '../x', `../${path.basename(outside)}`, 'a/b', '/etc', 'a\u0000b', '.']) {
      failsWith(await hl('ADD', { ...conf(V4), name }), 7, 'name');
    }
    failsWith(await hl('ADD', conf(V4), { id: '../../etc' }), 4, 'CNI_CONTAINERID');
    failsWith(await hl('ADD', conf(V4), { id: 'a\nb' }), 4);
    failsWith(await hl('ADD', conf(V4), { ifname: '../x' }), 4, 'CNI_IFNAME');
    failsWith(await hl('ADD', conf({ ...V4, dataDir: `${dataDir}/../${path.basename(outside)}` })), 7, 'ipam.dataDir');
    failsWith(await hl('ADD', { ...conf(V4), name: 'x' }, { args: 'IP=../../etc' }), 4);
    expect(readdirSync(base).sort()).toEqual(parent);
    expect(readdirSync(dataDir)).toEqual([]);
    expect(readdirSync(outside)).toEqual([]);
    // <dataDir>/<name> as a symlink to a directory outside dataDir
    symlinkSync(outside, path.join(dataDir, net));
    failsWith(await hl('ADD', conf(V4)), 7, 'outside');
    failsWith(await hl('DEL', conf(V4), { netns: null }), 7, 'outside');
    failsWith(await hl('GC', { ...conf(V4), 'cni.dev/valid-attachments': [] }), 7, 'outside');
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(path.join(dataDir, net)).isSymbolicLink()).toBe(true);
  });
});

describe('host-local: concurrency', () => {
  it('100 ADDs started at once get 100 distinct addresses; every file is well formed', async () => {
    fresh();
    const c = conf({ ranges: [[{ subnet: '10.205.0.0/24' }], [{ subnet: 'fd00:205::/120' }]] });
    const runs = await Promise.all(Array.from({ length: 100 }, (_, i) => hl('ADD', c, { id: `ctr${i}` })));
    const failed = runs.filter((r) => r.exitCode !== 0);
    expect(failed.map((r) => r.stdout)).toEqual([]);
    const v4 = runs.map((r) => addresses(r.json ?? {})[0]);
    const v6 = runs.map((r) => addresses(r.json ?? {})[1]);
    expect(new Set(v4).size).toBe(100);
    expect(new Set(v6).size).toBe(100);
    const all = ipFiles();
    expect(all).toHaveLength(200);
    const owners = all.map(content);
    for (const o of owners) expect(o).toMatch(/^ctr\d+\r\neth0$/);
    for (let i = 0; i < 100; i++) {
      expect(content(v4[i].split('/')[0])).toBe(`ctr${i}\r\neth0`);
      expect(content(v6[i].split('/')[0])).toBe(`ctr${i}\r\neth0`);
    }
    expect(files().filter((f) => f.startsWith('.cnits-tmp'))).toEqual([]);
    // GC with no valid attachment releases all of them in one call
    ok(await hl('GC', { ...c, 'cni.dev/valid-attachments': [] }));
    expect(ipFiles()).toEqual([]);
  }, 600_000);
});

describe('host-local: in-process, as a delegate of our interface plugins runs it', () => {
  it('ADD, CHECK and DEL through the engine entry point', async () => {
    fresh();
    const plugin = (await import('../ipam/host-local/index.ts')).default as unknown as Plugin<NetConfBase>;
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'inproc', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: BIN };
    const c = conf(V4);
    const add = await invoke(plugin, env, JSON.stringify(c));
    expect(add.exitCode, add.stdout).toBe(0);
    const res = JSON.parse(add.stdout) as Obj;
    expect(addresses(res)).toEqual(['10.201.0.2/24']);
    expect((await invoke(plugin, { ...env, CNI_COMMAND: 'CHECK' }, JSON.stringify({ ...c, prevResult: res }))).exitCode).toBe(0);
    expect((await invoke(plugin, { ...env, CNI_COMMAND: 'DEL', CNI_NETNS: '' }, JSON.stringify(c))).exitCode).toBe(0);
    expect(ipFiles()).toEqual([]);
  });
});

describe('host-local: as runtimes install it', () => {
  it('works through a symlink named host-local and with CNI_TS_NO_INPROCESS=1', async () => {
    fresh();
    const dir = path.join(dataDir, 'bin');
    mkdirSync(dir, { recursive: true });
    symlinkSync(path.join(BIN, 'cni-ts'), path.join(dir, 'host-local'));
    const c = conf(V4);
    expect(addresses(ok(await hl('ADD', c, { binDir: dir, env: { CNI_TS_NO_INPROCESS: '1' } })))).toEqual(['10.201.0.2/24']);
    ok(await hl('DEL', c, { binDir: dir, env: { CNI_TS_NO_INPROCESS: '1' } }));
    expect(ipFiles()).toEqual([]);
  });
});

describe.skipIf(!existsSync(REF))('host-local: interop with the Go reference store', () => {
  // The reference (1.1.1 here) speaks up to 1.0.0.
  const c = (): Obj =>
    conf({ ranges: [[{ subnet: '10.206.0.0/24' }], [{ subnet: 'fd00:206::/64', rangeStart: 'fd00:206::1:0:0:1' }]] }, {}, '1.0.0');

  it('allocated by the reference, checked and released by ours', async () => {
    fresh();
    const res = ok(await ref('ADD', c(), { id: 'go1' }));
    expect(addresses(res)).toEqual(['10.206.0.2/24', 'fd00:206::1:0:0:1/64']);
    ok(await hl('CHECK', { ...c(), prevResult: res }, { id: 'go1' }));
    // ours continues after the reference's last reservation, and returns the same for a repeated ADD
    expect(addresses(ok(await hl('ADD', c(), { id: 'ts1' })))).toEqual(['10.206.0.3/24', 'fd00:206::1:0:0:2/64']);
    expect(addresses(ok(await hl('ADD', c(), { id: 'go1' })))).toEqual(addresses(res));
    ok(await hl('DEL', c(), { id: 'go1', netns: null }));
    expect(ipFiles()).toEqual(['10.206.0.3', 'fd00:206::1:0:0:2']);
  });

  it('allocated by ours, checked and released by the reference', async () => {
    fresh();
    const res = ok(await hl('ADD', c(), { id: 'ts1' }));
    ok(await ref('CHECK', { ...c(), prevResult: res }, { id: 'ts1' }));
    expect(addresses(ok(await ref('ADD', c(), { id: 'go1' })))).toEqual(['10.206.0.3/24', 'fd00:206::1:0:0:2/64']);
    // the reference refuses a second allocation for an attachment ours made
    expect((await ref('ADD', c(), { id: 'ts1' })).exitCode).toBe(1);
    ok(await ref('DEL', c(), { id: 'ts1' }));
    expect(ipFiles()).toEqual(['10.206.0.3', 'fd00:206::1:0:0:2']);
    ok(await hl('DEL', c(), { id: 'go1' }));
    expect(ipFiles()).toEqual([]);
  });

  it('takes the same lock as the reference: flock(2) on <store>/lock', async () => {
    fresh();
    mkdirSync(storeDirOf(), { recursive: true });
    // hold the lock as the reference plugin does while it allocates
    const holder = execa('flock', ['--exclusive', path.join(storeDirOf(), 'lock'), 'cat'], {
      stdin: 'pipe',
      stdout: 'pipe',
      reject: false,
      buffer: false,
    });
    await new Promise<void>((resolve) => {
      holder.stdout?.once('data', () => resolve());
      holder.stdin?.write('held\n');
    });
    let finished = false;
    const traceFile = path.join(dataDir, `trace-${Math.random().toString(16).slice(2, 8)}`);
    const add = hl('ADD', c(), { id: 'waits', env: { CNI_TS_TRACE: traceFile } }).then((r) => {
      finished = true;
      return r;
    });
    // Wait until the ADD is waiting for this very lock: under Bun it says so in its trace (it
    // tries flock(2) LOCK_NB again with a backoff, in-process); on the process path the kernel
    // lists its flock(1) helper as blocked on the lock file's inode (a `->` waiter in
    // /proc/locks). An ordering, not a wall-clock bound.
    const ino = statSync(path.join(storeDirOf(), 'lock')).ino;
    const waiter = new RegExp(`^\\d+: -> FLOCK +ADVISORY +WRITE +\\d+ +[0-9a-f]+:[0-9a-f]+:${ino} `, 'm');
    const waiting = (): boolean =>
      waiter.test(readFileSync('/proc/locks', 'utf8')) ||
      (existsSync(traceFile) && /flock \S+\/lock: held elsewhere, waiting in-process/.test(readFileSync(traceFile, 'utf8')));
    for (let i = 0; i < 600 && !waiting(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(waiting()).toBe(true);
    // still waiting a moment later: it did not take the lock past the holder
    await new Promise((r) => setTimeout(r, 200));
    expect(finished).toBe(false);
    expect(ipFiles()).toEqual([]);
    holder.stdin?.end();
    await holder;
    expect(addresses(ok(await add))).toEqual(['10.206.0.2/24', 'fd00:206::1:0:0:1/64']);
    rmSync(traceFile, { force: true });
  });

  it('a DEL that waited for the lock releases only files still its own (one GC freed and another took meanwhile stays)', async () => {
    fresh();
    const config = conf({ ranges: [[{ subnet: '10.207.0.0/24' }]] });
    const [mine] = addresses(ok(await hl('ADD', config, { id: 'old' })));
    const ip = mine.split('/')[0];
    const holder = execa('flock', ['--exclusive', path.join(storeDirOf(), 'lock'), 'cat'], {
      stdin: 'pipe',
      stdout: 'pipe',
      reject: false,
      buffer: false,
    });
    await new Promise<void>((resolve) => {
      holder.stdout?.once('data', () => resolve());
      holder.stdin?.write('held\n');
    });
    const traceFile = path.join(dataDir, `trace-${Math.random().toString(16).slice(2, 8)}`);
    const del = hl('DEL', config, { id: 'old', env: { CNI_TS_TRACE: traceFile } });
    // the DEL found the file and now waits for the lock (trace under Bun, /proc/locks on the process path)
    const ino = statSync(path.join(storeDirOf(), 'lock')).ino;
    const waiter = new RegExp(`^\\d+: -> FLOCK +ADVISORY +WRITE +\\d+ +[0-9a-f]+:[0-9a-f]+:${ino} `, 'm');
    const waiting = (): boolean =>
      waiter.test(readFileSync('/proc/locks', 'utf8')) ||
      (existsSync(traceFile) && /flock \S+\/lock: held elsewhere, waiting in-process/.test(readFileSync(traceFile, 'utf8')));
    for (let i = 0; i < 600 && !waiting(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(waiting()).toBe(true);
    // meanwhile (as a GC and another ADD would under the lock) the address changed hands
    writeFileSync(path.join(storeDirOf(), ip), 'new\r\neth0');
    holder.stdin?.end();
    await holder;
    ok(await del);
    expect(content(ip)).toBe('new\r\neth0');
    rmSync(traceFile, { force: true });
  });

  it('50 reference and 50 of our ADDs at once on one store: 100 distinct addresses', async () => {
    fresh();
    const runs = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? ref : hl)('ADD', c(), { id: `mix${i}` })));
    expect(runs.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    const v4 = runs.map((r) => addresses(r.json ?? {})[0]);
    expect(new Set(v4).size).toBe(100);
    expect(new Set(runs.map((r) => addresses(r.json ?? {})[1])).size).toBe(100);
    for (let i = 0; i < 100; i++) expect(content(v4[i].split('/')[0])).toBe(`mix${i}\r\neth0`);
    const dels = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? hl : ref)('DEL', c(), { id: `mix${i}` })));
    expect(dels.filter((r) => r.exitCode !== 0)).toEqual([]);
    expect(ipFiles()).toEqual([]);
  }, 600_000);

  it('both allocating in turn never hand out one address twice', async () => {
    fresh();
    const got: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = i % 2 ? await ref('ADD', c(), { id: `x${i}` }) : await hl('ADD', c(), { id: `x${i}` });
      got.push(...addresses(ok(r)));
    }
    expect(new Set(got).size).toBe(12);
    for (let i = 0; i < 6; i++) ok(i % 2 ? await hl('DEL', c(), { id: `x${i}` }) : await ref('DEL', c(), { id: `x${i}` }));
    expect(ipFiles()).toEqual([]);
  });
});
