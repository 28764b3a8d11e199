/**
 * overlay DEL touches only the pod (docs/overlay.md): it must release the pod's address and
 * remove its veth and rules with the cluster store unreachable, and with the pod's netns gone.
 * One host namespace on its own fabric with its own etcd (independent of overlay.test.ts).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostVethName } from '../shared/kernel/veth.ts';
import { Cleanup, deleteNetns, inNs, makeNetns, type TestNetns } from './helpers/netns.ts';
import { uid } from './helpers/run.ts';
import { makeEtcd, makeFabric, makeHost, runOnHost, type Etcd, type Fabric, type Host } from './overlay-topology.ts';

const cleanup = new Cleanup();
let fab: Fabric;
let etcd: Etcd;
let host: Host;
const NAME = 'htovldel';

const config = (): Record<string, unknown> => ({
  cniVersion: '1.1.0',
  name: NAME,
  type: 'overlay',
  network: '10.216.0.0/16',
  stateDir: host.stateDir,
  nftTable: 'ht_ovl',
  leaseTTL: 120,
  store: { type: 'etcd', endpoints: [etcd.endpoint], prefix: `/cnits-test/${uid('ht')}` },
});

interface Pod {
  ns: TestNetns;
  id: string;
  ip: string;
}

async function addPod(): Promise<Pod> {
  const ns = await makeNetns(cleanup, 'htovlp');
  const id = uid('ht');
  const r = await runOnHost(host, { command: 'ADD', containerId: id, netns: ns.path, ifname: 'eth0', config: cfg });
  expect(r.exitCode, r.stdout + r.stderr).toBe(0);
  cleanup.add(() => runOnHost(host, { command: 'DEL', containerId: id, netns: '', ifname: 'eth0', config: cfg }));
  const ip = String((r.json?.ips as Array<{ address: string }>)[0].address).split('/')[0];
  return { ns, id, ip };
}

const reservation = (ip: string): string => path.join(host.stateDir, 'ipam', NAME, ip);
const hostVethUp = async (id: string): Promise<boolean> =>
  (await inNs(host.ns, 'ip', ['link', 'show', 'dev', hostVethName(id, 'eth0')], true)).exitCode === 0;
const rulesNaming = async (ip: string): Promise<string[]> =>
  (await inNs(host.ns, 'nft', ['list', 'ruleset'])).stdout
    .split('\n')
    .filter((l) => new RegExp(`(^|[^0-9.])${ip.replace(/\./g, '\\.')}([^0-9.]|$)`).test(l));

async function expectAttached(p: Pod): Promise<void> {
  expect(existsSync(reservation(p.ip))).toBe(true);
  expect(await hostVethUp(p.id)).toBe(true);
}
async function expectGone(p: Pod): Promise<void> {
  expect(existsSync(reservation(p.ip)), `reservation of ${p.ip}`).toBe(false);
  expect(await hostVethUp(p.id), 'host veth').toBe(false);
  expect(await rulesNaming(p.ip)).toEqual([]);
}

let cfg: Record<string, unknown>;
beforeAll(async () => {
  fab = await makeFabric(cleanup, '192.168.232');
  etcd = makeEtcd(cleanup, fab.dir, fab.ns, fab.gateway, 2379, 2380);
  await etcd.start();
  host = await makeHost(cleanup, fab, 1);
  cfg = config();
}, 120_000);
afterAll(() => cleanup.run(), 120_000);

describe('overlay DEL touches only the pod', { timeout: 120_000 }, () => {
  it('with the store down: DEL succeeds and releases the address, veth and rules; repeated DEL too', async () => {
    const p = await addPod();
    await expectAttached(p);
    await etcd.stop();
    try {
      // the store really is down: a call that needs it says so (11 try again later)
      const other = await makeNetns(cleanup, 'htovlp');
      const add = await runOnHost(host, { command: 'ADD', containerId: uid('ht'), netns: other.path, ifname: 'eth0', config: cfg });
      expect(add.json?.code, add.stdout).toBe(11);
      for (const netns of [p.ns.path, '']) {
        const del = await runOnHost(host, { command: 'DEL', containerId: p.id, netns, ifname: 'eth0', config: cfg });
        expect(del.exitCode, del.stdout + del.stderr).toBe(0);
        await expectGone(p);
      }
    } finally {
      await etcd.start();
    }
  });

  it('with the pod netns deleted: DEL succeeds and releases the address, veth and rules', async () => {
    const p = await addPod();
    await expectAttached(p);
    await deleteNetns(p.ns.name);
    expect(existsSync(p.ns.path)).toBe(false);
    const del = await runOnHost(host, { command: 'DEL', containerId: p.id, netns: p.ns.path, ifname: 'eth0', config: cfg });
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    await expectGone(p);
  });
});
