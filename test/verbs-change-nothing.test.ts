/**
 * Every verb other than ADD (CHECK with a plausible prevResult, DEL, GC, STATUS) changes
 * nothing on a host where the container was never added (issue 21): for every plugin, on a
 * clean host and on a host with an unrelated attachment of the same network. The plugins run
 * inside a "host" network namespace (as a runtime there would run them); links, addresses,
 * routes, neighbours, FDB and the nft ruleset of the host and the containers, the plugins'
 * state directories and the overlay's store file are compared before and after.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cleanup, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { runPlugin, uid, type PluginRun } from './helpers/run.ts';
import { diffSnapshots, settle, snapshot } from './helpers/snapshot.ts';
import { makeFabric, makeHost, type Fabric, type Host } from './overlay-topology.ts';

const cleanup = new Cleanup();
let fab: Fabric;
let hostN = 0;
beforeAll(async () => {
  fab = await makeFabric(cleanup, '192.168.233', 'ho-fab');
}, 60_000);
afterAll(() => cleanup.run(), 120_000);

type Obj = Record<string, unknown>;

interface Case {
  /** the plugin's config for this test (per-test state paths) */
  config(): Obj;
  /** a prevResult CHECK could plausibly get for container `netns` */
  prev(netns: string): Obj;
  /** an unrelated attachment of the same network: ADD for another container */
  unrelated(h: Host, dir: string): Promise<{ id: string; ns: TestNetns }>;
  /** directories the plugin keeps state in */
  dirs: string[];
}

interface Env {
  host: Host;
  dir: string;
}

const run = (h: Host, command: string, config: Obj, containerId = '', netns = '', env: Record<string, string> = {}): Promise<PluginRun> =>
  runPlugin(String(config.type ?? (config.ipam as Obj).type), {
    command,
    containerId,
    netns,
    ifname: 'eth0',
    config,
    hostNetns: h.ns.path,
    env,
  });

const SUBNET = '10.231.0';

function cases(e: Env): Record<string, Case> {
  const br = `ho${uid('').slice(0, 6)}`;
  const ipamOf = (sub: string): Obj => ({ type: 'host-local', ranges: [[{ subnet: `${SUBNET}.0/24` }]], dataDir: path.join(e.dir, sub) });
  const ifacePrev = (netns: string, bridge: string, addr = `${SUBNET}.9/24`): Obj => ({
    cniVersion: '1.1.0',
    interfaces: [
      { name: bridge, mac: '02:00:00:00:00:01' },
      { name: 'vethho000001', mac: '02:00:00:00:00:02' },
      { name: 'eth0', mac: '02:00:00:00:00:03', sandbox: netns },
    ],
    ips: [{ address: addr, gateway: addr.replace(/\.\d+\/24$/, '.1'), interface: 2 }],
    routes: [{ dst: '0.0.0.0/0', gw: addr.replace(/\.\d+\/24$/, '.1') }],
    dns: {},
  });
  const addOn = async (config: Obj): Promise<{ id: string; ns: TestNetns }> => {
    const ns = await makeNetns(cleanup, 'ho-u');
    const id = uid('hou');
    const r = await run(e.host, 'ADD', config, id, ns.path);
    expect(r.exitCode, `unrelated ADD: ${r.stdout} ${r.stderr}`).toBe(0);
    cleanup.add(() => run(e.host, 'DEL', config, id, ns.path));
    return { id, ns };
  };
  const overlayStore = path.join(e.dir, 'store', 'leases.json');
  const all: Record<string, Case> = {
    bridge: {
      config: () => ({
        cniVersion: '1.1.0',
        name: 'hobr',
        type: 'bridge',
        bridge: br,
        isGateway: true,
        ipMasq: true,
        nftTable: 'ho_br',
        ipam: ipamOf('ipam'),
      }),
      prev: (netns) => ifacePrev(netns, br),
      unrelated: async () => addOn(all.bridge.config()),
      dirs: [path.join(e.dir, 'ipam')],
    },
    overlay: {
      config: () => ({
        cniVersion: '1.1.0',
        name: 'hoovl',
        type: 'overlay',
        network: '10.232.0.0/16',
        stateDir: path.join(e.dir, 'overlay'),
        nftTable: 'ho_ovl',
        leaseTTL: 600,
        store: { type: 'file', path: overlayStore },
      }),
      prev: (netns) => ifacePrev(netns, 'ovl0', '10.232.1.9/24'),
      unrelated: async () => addOn(all.overlay.config()),
      dirs: [path.join(e.dir, 'overlay'), path.join(e.dir, 'store')],
    },
    'host-device': {
      config: () => ({ cniVersion: '1.1.0', name: 'hohd', type: 'host-device', device: 'hodevb', dataDir: path.join(e.dir, 'hd') }),
      prev: (netns) => ({
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:05', sandbox: netns }],
        ips: [],
        dns: {},
      }),
      unrelated: async (h) => {
        await inNs(h.ns, 'ip', ['link', 'add', 'hodeva', 'type', 'veth', 'peer', 'name', 'hodevb']);
        return addOn({ ...all['host-device'].config(), device: 'hodeva' });
      },
      dirs: [path.join(e.dir, 'hd')],
    },
    portmap: {
      config: () => ({
        cniVersion: '1.1.0',
        name: 'hopm',
        type: 'portmap',
        nftTable: 'ho_pm',
        runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] },
      }),
      prev: (netns) => ({
        cniVersion: '1.1.0',
        interfaces: [{ name: 'eth0', sandbox: netns }],
        ips: [{ address: `${SUBNET}.9/24`, interface: 0 }],
        dns: {},
      }),
      unrelated: async () => {
        const ns = await makeNetns(cleanup, 'ho-u');
        return addOn({
          ...all.portmap.config(),
          runtimeConfig: { portMappings: [{ hostPort: 18081, containerPort: 80, protocol: 'tcp' }] },
          prevResult: all.portmap.prev(ns.path),
        });
      },
      dirs: [],
    },
    bandwidth: {
      config: () => ({
        cniVersion: '1.1.0',
        name: 'hobw',
        type: 'bandwidth',
        ingressRate: 8_000_000,
        ingressBurst: 80_000,
        egressRate: 8_000_000,
        egressBurst: 80_000,
      }),
      prev: (netns) => ifacePrev(netns, br),
      unrelated: async (h) => {
        // A veth of its own (no interface plugin needed) shaped by a real ADD: its IFB and qdiscs must stay.
        const ns = await makeNetns(cleanup, 'ho-u');
        const veth = `hobw${uid('').slice(0, 6)}`;
        await inNs(h.ns, 'ip', ['link', 'add', veth, 'up', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
        const id = uid('hou');
        const config = {
          ...all.bandwidth.config(),
          prevResult: { cniVersion: '1.1.0', interfaces: [{ name: veth }, { name: 'eth0', sandbox: ns.path }], ips: [] },
        };
        const r = await run(h, 'ADD', config, id, ns.path);
        expect(r.exitCode, `unrelated ADD: ${r.stdout} ${r.stderr}`).toBe(0);
        cleanup.add(() => run(h, 'DEL', config, id, ns.path));
        return { id, ns };
      },
      dirs: [],
    },
    loopback: {
      config: () => ({ cniVersion: '1.1.0', name: 'holo', type: 'loopback' }),
      prev: (netns) => ({
        cniVersion: '1.1.0',
        interfaces: [{ name: 'lo', sandbox: netns }],
        ips: [{ address: '127.0.0.1/8', interface: 0 }],
        dns: {},
      }),
      unrelated: async () => addOn(all.loopback.config()),
      dirs: [],
    },
    'host-local': {
      config: () => ({ cniVersion: '1.1.0', name: 'hohl', ipam: ipamOf('hl') }),
      prev: () => ({ cniVersion: '1.1.0', ips: [{ address: `${SUBNET}.9/24`, gateway: `${SUBNET}.1` }], dns: {} }),
      unrelated: async () => addOn(all['host-local'].config()),
      dirs: [path.join(e.dir, 'hl')],
    },
    static: {
      config: () => ({ cniVersion: '1.1.0', name: 'host', ipam: { type: 'static', addresses: [{ address: `${SUBNET}.9/24` }] } }),
      prev: () => ({ cniVersion: '1.1.0', ips: [{ address: `${SUBNET}.9/24` }], dns: {} }),
      unrelated: async () => addOn(all.static.config()),
      dirs: [],
    },
  };
  return all;
}

const PLUGINS = ['bridge', 'overlay', 'host-device', 'portmap', 'bandwidth', 'loopback', 'host-local', 'static'];

describe.each(PLUGINS)('%s: CHECK, DEL, GC and STATUS change nothing', { timeout: 120_000 }, (plugin) => {
  it.each([
    ['a clean host', false],
    ['a host with an unrelated attachment', true],
  ])('on %s', async (_what, withOther) => {
    const host = await makeHost(cleanup, fab, ++hostN, 'ho-h');
    const dir = path.join(fab.dir, `ho-${plugin}-${hostN}`);
    mkdirSync(dir, { recursive: true });
    const c = cases({ host, dir })[plugin];
    const other = withOther ? await c.unrelated(host, dir) : undefined;
    const container = await makeNetns(cleanup, 'ho-c');
    const spaces = [host.ns, container, ...(other ? [other.ns] : [])];
    const spec = { netns: spaces, dirs: c.dirs };
    await settle(spaces);
    const before = await snapshot(spec);
    const id = uid('hoc');
    const valid = other ? [{ containerID: other.id, ifname: 'eth0' }] : [];
    const outcomes: string[] = [];
    for (const [verb, config, cid, netns] of [
      ['CHECK', { ...c.config(), prevResult: c.prev(container.path) }, id, container.path],
      ['DEL', { ...c.config(), prevResult: c.prev(container.path) }, id, container.path],
      ['DEL', c.config(), id, ''],
      ['GC', { ...c.config(), 'cni.dev/valid-attachments': valid }, '', ''],
      ['STATUS', c.config(), '', ''],
    ] as const) {
      const r = await run(host, verb, config, cid, netns);
      outcomes.push(`${verb}: exit ${r.exitCode} ${r.stdout.trim()}`);
      // DEL and GC succeed (nothing to remove); CHECK may pass (static: config and prevResult agree) or fail
      if (verb === 'DEL' || verb === 'GC') expect(r.exitCode, `${verb}: ${r.stdout} ${r.stderr}`).toBe(0);
      const now = await snapshot(spec);
      const diff = diffSnapshots(before, now);
      expect(diff, `${plugin} ${verb} changed the host:\n${diff.join('\n')}\n${outcomes.join('\n')}`).toEqual([]);
    }
    if (plugin === 'overlay' && !withOther) {
      // nothing set up: CHECK reports the missing state with the spec's code 3
      expect(outcomes[0]).toMatch(/"code":3/);
    }
  });
});
