/**
 * sbr against the real kernel and the Go reference (/usr/lib/cni/sbr): the same container
 * state (addresses, routes) built twice, one plugin run on each, rules and every routing table
 * compared; interop (ADD with one, DEL with the other); `table` mode. Everything happens in
 * namespaces of this test.
 */
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { REF_BIN, runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { interfaceIps, nextTable, planRoutes, rulesToDelete, staticGateways, type MainRoute } from '../plugins/sbr/config.ts';

const PREFIX = 'pq';
const cleanup = new Cleanup();
afterEach(async () => cleanup.run());

/** A container netns with eth0 (a veth) holding 10.77.1.5/24 and fd77::5/64, routes via 10.77.1.1. */
async function container(): Promise<TestNetns> {
  const ns = await makeNetns(cleanup, PREFIX);
  const cmds = [
    ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0'],
    ['addr', 'add', '10.77.1.5/24', 'dev', 'eth0'],
    ['addr', 'add', 'fd77::5/64', 'dev', 'eth0', 'nodad'],
    ['addr', 'add', '10.78.0.9/16', 'dev', 'eth0'],
    ['link', 'set', 'eth0', 'up'],
    ['link', 'set', 'peer0', 'up'],
    ['route', 'add', 'default', 'via', '10.77.1.1'],
    ['route', 'add', '10.88.0.0/16', 'via', '10.77.1.1'],
  ];
  for (const c of cmds) await inNs(ns, 'ip', c);
  return ns;
}

const prevResult = (ns: TestNetns, withSecond = false): Record<string, unknown> => ({
  cniVersion: '1.0.0',
  interfaces: [{ name: 'eth0', sandbox: ns.path }, { name: 'other' }],
  ips: [
    { address: '10.77.1.5/24', gateway: '10.77.1.1', interface: 0 },
    { address: 'fd77::5/64', gateway: 'fd77::1', interface: 0 },
    { address: '10.99.0.5/24', interface: 1 },
    ...(withSecond ? [{ address: '10.78.0.9/16', interface: 0 }] : []),
  ],
});

function call(command: string, ns: TestNetns, conf: Record<string, unknown>, ref = false): Promise<PluginRun> {
  return runPlugin('sbr', {
    command,
    containerId: 'pqsbr',
    netns: ns.path,
    ifname: 'eth0',
    config: conf,
    ...(ref ? { binDir: REF_BIN, path: REF_BIN } : {}),
  });
}

/** Rules of both families and every routing table but local, with the netns name taken out. */
async function state(ns: TestNetns): Promise<string> {
  const out = await Promise.all([
    inNs(ns, 'ip', ['-4', 'rule']),
    inNs(ns, 'ip', ['-6', 'rule']),
    inNs(ns, 'ip', ['-d', '-4', 'route', 'show', 'table', 'all']),
    inNs(ns, 'ip', ['-d', '-6', 'route', 'show', 'table', 'all']),
  ]);
  return out
    .map((r) =>
      r.stdout
        .split('\n')
        .filter((l) => !/table local/.test(l))
        .join('\n'),
    )
    .join('\n---\n');
}

describe('sbr: planning (pure)', () => {
  it('interface IPs, static gateways, table choice, routes moved, source hints, rule deletion', () => {
    const prev = {
      interfaces: [{ name: 'eth0' }, { name: 'net1' }],
      ips: [{ address: '10.0.0.2/24', interface: 0 }, { address: '10.1.0.2/24', interface: 1 }, { address: '10.2.0.2/24' }],
    };
    expect(interfaceIps('eth0', prev).map((i) => i.address)).toEqual(['10.0.0.2/24', '10.2.0.2/24']);
    expect(() => interfaceIps('eth0', { ips: [] })).toThrow(/No IP addresses supplied on interface: eth0/);
    expect(staticGateways(['10.0.0.9', 'fd00::9'])).toEqual({ 4: '10.0.0.9', 6: 'fd00::9' });
    expect(() => staticGateways(['10.0.0.9', '10.0.0.8'])).toThrow(/multiple IPv4/);
    expect(() => staticGateways(['a', 'b', 'c'])).toThrow(/more than 2/);
    expect(() => staticGateways(['nope'])).toThrow(/invalid static gateway/);
    expect(nextTable(new Set([100, 101, 103]), 100)).toBe(102);
    const routes: MainRoute[] = [
      { family: 4, dst: 'default', gateway: '10.0.0.1', protocol: 'boot', scope: 'global', type: 'unicast' },
      { family: 4, dst: '10.0.0.0/24', prefsrc: '10.0.0.2', protocol: 'kernel', scope: 'link', type: 'unicast' },
      { family: 4, dst: '10.5.0.0/16', gateway: '10.9.9.9', protocol: 'boot', scope: 'global', type: 'unicast' },
    ];
    const p = planRoutes([{ address: '10.0.0.2/24', gateway: '10.0.0.1' }], 'eth0', routes, new Set([100]), { 4: '10.0.0.254' }, false);
    expect(p.tables).toEqual([101]);
    expect(p.rules[4]).toEqual([['rule', 'add', 'from', '10.0.0.2/32', 'table', '101']]);
    expect(p.commands).toEqual([
      ['route', 'add', '0.0.0.0/0', 'via', '10.0.0.254', 'dev', 'eth0', 'table', '101'],
      ['route', 'replace', '0.0.0.0/0', 'via', '10.0.0.1', 'dev', 'eth0', 'proto', 'boot', 'scope', 'global', 'table', '101'],
      ['route', 'replace', '10.0.0.0/24', 'dev', 'eth0', 'proto', 'kernel', 'scope', 'link', 'src', '10.0.0.2', 'table', '101'],
    ]);
    expect(p.deletions).toHaveLength(3);
    const h = planRoutes([{ address: '10.0.0.2/24' }], 'eth0', routes, new Set(), {}, true);
    expect(h.commands.at(-1)).toEqual([
      'route',
      'replace',
      '10.0.0.0/24',
      'dev',
      'eth0',
      'src',
      '10.0.0.2',
      'scope',
      'link',
      'table',
      'main',
    ]);
    expect(h.deletions).toHaveLength(2);
    const del = rulesToDelete(
      [
        { priority: 32765, src: '10.0.0.2', table: '100' },
        { priority: 32764, src: 'fd00::2', table: '101' },
        { priority: 0, src: 'all', table: 'local' },
      ],
      ['10.0.0.2', 'fd00:0::2'],
      undefined,
    );
    expect(del).toEqual({
      4: [['rule', 'del', 'from', '10.0.0.2/32', 'table', '100', 'pref', '32765']],
      6: [['rule', 'del', 'from', 'fd00::2/128', 'table', '101', 'pref', '32764']],
    });
    expect(rulesToDelete([{ priority: 1, src: '10.0.0.2', table: '100' }], ['10.0.0.2'], 7)).toEqual({ 4: [], 6: [] });
  });
});

describe('sbr: kernel, against the reference', () => {
  for (const withSecond of [false, true]) {
    it(`ADD gives the reference's rules and tables, and its result (${withSecond ? 'two IPv4 addresses' : 'one per family'}); DEL removes the rules as the reference`, async () => {
      const [mine, theirs] = [await container(), await container()];
      const conf = (ns: TestNetns): Record<string, unknown> => ({
        cniVersion: '1.0.0',
        name: uid(PREFIX),
        type: 'sbr',
        prevResult: prevResult(ns, withSecond),
      });
      const [a, b] = [await call('ADD', mine, conf(mine)), await call('ADD', theirs, conf(theirs), true)];
      expect(a.exitCode, a.stdout + a.stderr).toBe(0);
      expect(b.exitCode, b.stdout).toBe(0);
      expect(JSON.stringify(a.json).replaceAll(mine.path, 'NS')).toBe(JSON.stringify(b.json).replaceAll(theirs.path, 'NS'));
      const s = await state(mine);
      expect(s).toBe(await state(theirs));
      expect(s).toMatch(/from 10\.77\.1\.5 lookup 100/);
      expect(s).toMatch(/default via 10\.77\.1\.1 dev eth0 table 100/);
      expect((await call('CHECK', mine, conf(mine))).exitCode).toBe(0);
      const [c, d] = [await call('DEL', mine, conf(mine)), await call('DEL', theirs, conf(theirs), true)];
      expect([c.exitCode, d.exitCode]).toEqual([0, 0]);
      expect(await state(mine)).toBe(await state(theirs));
      expect(await state(mine)).not.toMatch(/lookup 10[0-9]/);
      expect((await call('DEL', mine, conf(mine))).exitCode).toBe(0);
      expect((await call('CHECK', mine, conf(mine))).json).toMatchObject({ code: 105 });
    });
  }

  it('interop: ADD with ours and DEL with the reference, and the reverse, leave no rule; a second ADD takes the next table as the reference', async () => {
    for (const [addRef, delRef] of [
      [false, true],
      [true, false],
    ]) {
      const ns = await container();
      const conf = { cniVersion: '1.0.0', name: uid(PREFIX), type: 'sbr', prevResult: prevResult(ns) };
      expect((await call('ADD', ns, conf, addRef)).exitCode).toBe(0);
      expect((await call('DEL', ns, conf, delRef)).exitCode).toBe(0);
      expect((await inNs(ns, 'ip', ['rule'])).stdout).not.toMatch(/lookup 10[0-9]/);
    }
    const [mine, theirs] = [await container(), await container()];
    for (const [ns, ref] of [
      [mine, false],
      [theirs, true],
    ] as const) {
      await inNs(ns, 'ip', ['rule', 'add', 'from', '10.50.0.1', 'table', '100']);
      expect((await call('ADD', ns, { cniVersion: '1.0.0', name: 'n', type: 'sbr', prevResult: prevResult(ns) }, ref)).exitCode).toBe(0);
    }
    expect(await state(mine)).toBe(await state(theirs));
    expect(await state(mine)).toMatch(/from 10\.77\.1\.5 lookup 101/);
  });

  it("table: only rules into the given table, routes untouched; DEL removes only that table's rules; missing netns or interface on DEL is fine", async () => {
    // Debian 12's reference (1.1) predates `table` (it ignores the key): checked against the newer reference's behaviour
    const mine = await container();
    const before = await state(mine);
    const conf = { cniVersion: '1.0.0', name: 'n', type: 'sbr', table: 500, prevResult: prevResult(mine) };
    expect((await call('ADD', mine, conf)).exitCode).toBe(0);
    const s = await state(mine);
    expect(s).toMatch(/from 10\.77\.1\.5 lookup 500/);
    expect(s).toMatch(/from fd77::5 lookup 500/);
    expect(s.split('---').slice(2)).toEqual(before.split('---').slice(2));
    await inNs(mine, 'ip', ['rule', 'add', 'from', '10.77.1.5', 'table', '600']);
    expect((await call('DEL', mine, { cniVersion: '1.0.0', name: 'n', type: 'sbr', table: 500 })).exitCode).toBe(0);
    const left = (await inNs(mine, 'ip', ['rule'])).stdout;
    expect(left).not.toMatch(/lookup 500/);
    expect(left).toMatch(/lookup 600/);
    const gone = await makeNetns(cleanup, PREFIX);
    expect((await call('DEL', gone, { cniVersion: '1.0.0', name: 'n', type: 'sbr' })).exitCode).toBe(0);
    expect(
      (
        await runPlugin('sbr', {
          command: 'DEL',
          containerId: 'x',
          netns: '/var/run/netns/pq-none',
          ifname: 'eth0',
          config: { cniVersion: '1.0.0', name: 'n', type: 'sbr' },
        })
      ).exitCode,
    ).toBe(0);
    const noPrev = await call('ADD', mine, { cniVersion: '1.0.0', name: 'n', type: 'sbr' });
    expect(noPrev.json).toMatchObject({ code: 7 });
  });

  it('chained after ptp (ours after ours, the reference after the reference): the same container state, and traffic from the address still reaches the gateway', async () => {
    const states: string[] = [];
    for (const ref of [false, true]) {
      const host = await makeNetns(cleanup, PREFIX);
      const ctr = await makeNetns(cleanup, PREFIX);
      const dataDir = `/tmp/${uid(PREFIX)}`;
      cleanup.add(async () => rmSync(dataDir, { recursive: true, force: true }));
      const bin = ref ? { binDir: REF_BIN, path: REF_BIN } : {};
      const base = { cniVersion: '1.0.0', name: 'pqchain' };
      const ptpConf = {
        ...base,
        type: 'ptp',
        ipam: { type: 'host-local', subnet: '10.79.0.0/24', dataDir, routes: [{ dst: '0.0.0.0/0' }] },
      };
      const env = { containerId: 'pqchain', netns: ctr.path, ifname: 'eth0', hostNetns: host.path, ...bin };
      const p = await runPlugin('ptp', { command: 'ADD', config: ptpConf, ...env });
      expect(p.exitCode, p.stdout + p.stderr).toBe(0);
      const sbrConf = { ...base, type: 'sbr', prevResult: p.json };
      const r = await runPlugin('sbr', { command: 'ADD', config: sbrConf, ...env });
      expect(r.exitCode, r.stdout + r.stderr).toBe(0);
      expect(r.json).toEqual(p.json);
      const s = await state(ctr);
      expect(s).toMatch(/from 10\.79\.0\.2 lookup 100/);
      expect(s).toMatch(/default via 10\.79\.0\.1 dev eth0 table 100/);
      expect((await inNs(ctr, 'ping', ['-c1', '-W2', '-I', '10.79.0.2', '10.79.0.1'], true)).exitCode).toBe(0);
      states.push(s);
      expect((await runPlugin('sbr', { command: 'DEL', config: sbrConf, ...env })).exitCode).toBe(0);
      expect((await runPlugin('ptp', { command: 'DEL', config: ptpConf, ...env })).exitCode).toBe(0);
    }
    expect(states[0]).toBe(states[1]);
  });
});
