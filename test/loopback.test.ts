/**
 * loopback: the built executable in real test namespaces, every verb, and side by side with the
 * reference /usr/lib/cni/loopback.
 */
import { afterEach, describe, expect, it } from 'vitest';
import loopback from '../plugins/loopback/index.ts';
import { loopbackProblems, loopbackResult } from '../plugins/loopback/result.ts';
import * as exec from '../shared/kernel/exec.ts';
import { invoke } from '../shared/cni/skel.ts';
import type { LinkInfo } from '../shared/kernel/ip.ts';
import { Cleanup, deleteNetns, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { BIN, REF_BIN, runPlugin, uid, type RunArgs } from './helpers/run.ts';

const cleanup = new Cleanup();
afterEach(async () => {
  await cleanup.run();
});

const netconf = (v: string, extra: Record<string, unknown> = {}) => ({ cniVersion: v, name: 'lotest', type: 'loopback', ...extra });
const call = (command: string, ns: string, config: unknown, extra: Partial<RunArgs> = {}) =>
  runPlugin('loopback', { command, containerId: uid('ctr'), netns: ns, ifname: 'lo', config, ...extra });

async function loFlags(ns: TestNetns): Promise<string[]> {
  const r = await inNs(ns, 'ip', ['-json', 'link', 'show', 'dev', 'lo']);
  return (JSON.parse(r.stdout) as LinkInfo[])[0].flags;
}

describe('loopback result (pure)', () => {
  const lo: LinkInfo = {
    ifindex: 1,
    ifname: 'lo',
    flags: ['LOOPBACK', 'UP'],
    mtu: 65536,
    address: '00:00:00:00:00:00',
    addr_info: [
      { family: 'inet', local: '127.0.0.1', prefixlen: 8 },
      { family: 'inet', local: '10.9.9.9', prefixlen: 32 },
      { family: 'inet6', local: '::1', prefixlen: 128 },
    ],
  };
  it('reports the loopback addresses of each family on interface 0 and skips others', () => {
    expect(loopbackResult(lo, '/run/netns/x')).toEqual({
      interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: '/run/netns/x' }],
      ips: [
        { interface: 0, address: '127.0.0.1/8' },
        { interface: 0, address: '::1/128' },
      ],
    });
  });
  it('finds a down lo and missing addresses', () => {
    expect(loopbackProblems(lo, ['127.0.0.1/8', '::1/128'])).toEqual([]);
    expect(loopbackProblems({ ...lo, flags: ['LOOPBACK'], addr_info: [] }, ['::1/128'])).toEqual([
      'loopback interface is down',
      'address ::1/128 is missing from lo',
    ]);
    expect(loopbackProblems(undefined, [])).toHaveLength(1);
  });
});

describe('loopback executable', () => {
  it('ADD brings lo up, 127.0.0.1 and ::1 answer ping, result per spec 1.1.0', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    expect(await loFlags(ns)).not.toContain('UP');
    const r = await call('ADD', ns.path, netconf('1.1.0'));
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.json).toEqual({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'lo', mac: '00:00:00:00:00:00', sandbox: ns.path }],
      ips: [
        { interface: 0, address: '127.0.0.1/8' },
        { interface: 0, address: '::1/128' },
      ],
      dns: {},
    });
    expect(await loFlags(ns)).toContain('UP');
    expect((await inNs(ns, 'ping', ['-c1', '-W1', '127.0.0.1'], true)).exitCode).toBe(0);
    expect((await inNs(ns, 'ping', ['-6', '-c1', '-W1', '::1'], true)).exitCode).toBe(0);
  });

  it('ADD spawns exactly one process (nsenter ... ip -batch)', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const before = exec.spawnCount;
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: ns.path, CNI_IFNAME: 'lo', CNI_PATH: BIN, PATH: process.env.PATH };
    const out = await invoke(loopback, env, JSON.stringify(netconf('1.0.0')));
    expect(out.exitCode, out.stdout).toBe(0);
    expect(exec.spawnCount - before).toBe(1);
  });

  it('the executable does ADD, CHECK and DEL in-process over netlink (no process), or one ip process each with CNI_TS_NETLINK=0', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const nl = process.env.CNI_TS_NETLINK !== '0';
    const spawned = (stderr: string): number => [...stderr.matchAll(/\] spawned /g)].length;
    const add = await call('ADD', ns.path, netconf('1.0.0'), { env: { CNI_TS_TRACE: '1' } });
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(spawned(add.stderr), add.stderr).toBe(nl ? 0 : 1);
    const check = await call('CHECK', ns.path, netconf('1.0.0', { prevResult: add.json }), { env: { CNI_TS_TRACE: '1' } });
    expect(check.exitCode, check.stdout + check.stderr).toBe(0);
    expect(spawned(check.stderr), check.stderr).toBe(nl ? 0 : 1);
    const del = await call('DEL', ns.path, netconf('1.0.0'), { env: { CNI_TS_TRACE: '1' } });
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    expect(spawned(del.stderr), del.stderr).toBe(nl ? 0 : 1);
    expect(await loFlags(ns)).not.toContain('UP');
  });

  it.each(['0.1.0', '0.2.0'])('%s: legacy ip4/ip6 result', async (v) => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const r = await call('ADD', ns.path, netconf(v));
    expect(r.json).toEqual({ cniVersion: v, ip4: { ip: '127.0.0.1/8' }, ip6: { ip: '::1/128' }, dns: {} });
  });

  it.each(['0.3.1', '1.0.0'])('%s: same result shape as the reference loopback', async (v) => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const ref = await call('ADD', ns.path, netconf(v), { binDir: REF_BIN, path: REF_BIN });
    expect(ref.exitCode, ref.stdout).toBe(0);
    await inNs(ns, 'ip', ['link', 'set', 'lo', 'down']);
    const ours = await call('ADD', ns.path, netconf(v));
    expect(ours.exitCode, ours.stdout).toBe(0);
    // 0.3.x results carry ips[].version (spec); the reference 1.1.1 leaves it out. All else matches.
    const ips = ours.json?.ips as Array<Record<string, unknown>>;
    if (v === '0.3.1') expect(ips.map((i) => i.version)).toEqual(['4', '6']);
    const stripped = { ...ours.json, ips: ips.map(({ version: _v, ...rest }) => rest) };
    expect(stripped).toEqual(ref.json);
  });

  it('chained: passes prevResult through and still brings lo up', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const prev = {
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: ns.path }],
      ips: [{ interface: 0, address: '10.1.0.2/24' }],
      dns: {},
    };
    const r = await call('ADD', ns.path, netconf('1.0.0', { prevResult: prev }));
    expect(r.json).toEqual(prev);
    expect(await loFlags(ns)).toContain('UP');
  });

  it('CHECK passes while lo is up, fails once lo is down', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const add = await call('ADD', ns.path, netconf('1.0.0'));
    let r = await call('CHECK', ns.path, netconf('1.0.0', { prevResult: add.json }));
    expect(r.exitCode, r.stdout).toBe(0);
    // prevResult is required for CHECK (spec), refused by the engine with code 7.
    r = await call('CHECK', ns.path, netconf('1.0.0'));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringContaining('prevResult') });
    await inNs(ns, 'ip', ['link', 'set', 'lo', 'down']);
    r = await call('CHECK', ns.path, netconf('1.0.0', { prevResult: add.json }));
    expect(r.exitCode).toBe(1);
    expect(r.json).toMatchObject({ code: 105, msg: expect.stringContaining('down') });
  });

  it('CHECK fails when an address ADD reported is gone from lo', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    const add = await call('ADD', ns.path, netconf('1.0.0'));
    await inNs(ns, 'ip', ['addr', 'del', '127.0.0.1/8', 'dev', 'lo']);
    const r = await call('CHECK', ns.path, netconf('1.0.0', { prevResult: add.json }));
    expect(r.json).toMatchObject({ code: 105, msg: expect.stringContaining('127.0.0.1/8') });
  });

  it('DEL brings lo down; DEL twice succeeds', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    await call('ADD', ns.path, netconf('1.0.0'));
    for (let i = 0; i < 2; i++) {
      const r = await call('DEL', ns.path, netconf('1.0.0'));
      expect(r.exitCode, r.stdout).toBe(0);
      expect(r.stdout).toBe('');
      expect(await loFlags(ns)).not.toContain('UP');
    }
  });

  it('DEL succeeds when the netns was deleted or CNI_NETNS is empty', async () => {
    const ns = await makeNetns(cleanup, 'cnits-lo');
    await call('ADD', ns.path, netconf('1.0.0'));
    await deleteNetns(ns.name);
    let r = await call('DEL', ns.path, netconf('1.0.0'));
    expect(r.exitCode, r.stdout).toBe(0);
    r = await call('DEL', '', netconf('1.0.0'));
    expect(r.exitCode, r.stdout).toBe(0);
  });

  it('ADD and CHECK on a missing netns fail with a clear error (code 4 naming CNI_NETNS)', async () => {
    const gone = `/var/run/netns/${uid('cnits-gone')}`;
    for (const verb of ['ADD', 'CHECK']) {
      const r = await call(
        verb,
        gone,
        netconf(
          '1.0.0',
          verb === 'CHECK' ? { prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'lo', sandbox: gone }], ips: [] } } : {},
        ),
      );
      expect(r.exitCode).toBe(1);
      expect(r.json).toMatchObject({ code: 4, msg: expect.stringContaining('CNI_NETNS') });
    }
  });

  it('GC and STATUS succeed with no output', async () => {
    const gc = await runPlugin('loopback', { command: 'GC', config: netconf('1.1.0', { 'cni.dev/valid-attachments': [] }) });
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(gc.stdout).toBe('');
    const st = await runPlugin('loopback', { command: 'STATUS', config: netconf('1.1.0') });
    expect(st.exitCode, st.stdout).toBe(0);
    expect(st.stdout).toBe('');
  });
});
