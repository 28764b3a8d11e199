/**
 * Overlay lease figures on the cluster store's file backend (docs/overlay.md "Store"): the store
 * step of an overlay ADD (list the network's leases, then claim or renew this host's), with 200
 * hosts' leases in the store, alone and beside 1000 Endpoint objects (an overlay sharing the
 * agent's store). Medians of 15 rounds; each round opens the store afresh, as a plugin process
 * does. Run as: node --experimental-transform-types --no-warnings bench/overlay-leases.ts
 */
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { settingsOf } from '../shared/overlay/config.ts';
import { acquireLease, vtepMacFor } from '../shared/overlay/lease.ts';
import { listLeases, openStore, type ClusterLeaseStore } from '../shared/overlay/store.ts';
import { FileStore } from '../shared/store/file.ts';
import type { Endpoint } from '../shared/objects/types.ts';

const ROUNDS = 15;
const root = path.join(tmpdir(), `ovs-bench-leases-${process.pid}`);
mkdirSync(root, { recursive: true });
const med = (a: number[]): string => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]?.toFixed(1) ?? '-';
const host = (i: number): { publicIP: string; vtepMAC: string } => {
  const ip = `198.51.${100 + (i >> 8)}.${i & 255}`;
  return { publicIP: ip, vtepMAC: vtepMacFor(ip, 1) };
};
const ep = (i: number): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { name: `pod-${i}`, namespace: `ns${i % 20}`, labels: { app: `app${i % 50}` } },
  spec: { node: 'node-1', network: 'cbr0', containerId: 'c'.repeat(64), ifname: 'eth0', ips: [`10.1.${i >> 8}.${i & 255}/16`] },
});

async function scenario(label: string, endpoints: number): Promise<void> {
  const dir = path.join(root, `${endpoints}`);
  const conf = { type: 'file' as const, path: dir };
  const s = (i: number): ReturnType<typeof settingsOf> =>
    settingsOf({
      name: 'bench',
      network: '10.200.0.0/16',
      store: conf,
      leaseTTL: 3600,
      stateDir: path.join(root, `state-${endpoints}-${i}`),
    });
  const objects = new FileStore(dir);
  for (let i = 0; i < endpoints; i++) await objects.put(ep(i));
  const seed = await openStore(conf, 'bench');
  for (let i = 0; i < 200; i++) await acquireLease(seed, s(i), host(i), await listLeases(seed, {}));
  await seed.close();
  const claim = { wall: [] as number[], cpu: [] as number[] };
  const renew = { wall: [] as number[], cpu: [] as number[] };
  /** wall time and this process's CPU time (the VM is shared: CPU time is steadier) */
  const step = async (into: typeof claim, i: number): Promise<void> => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const st: ClusterLeaseStore = await openStore(conf, 'bench');
    await acquireLease(st, s(i), host(i), await listLeases(st, {}));
    await st.close();
    into.wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    into.cpu.push((c.user + c.system) / 1000);
  };
  for (let r = 0; r < ROUNDS; r++) {
    await step(claim, 1000 + r); // a new host: list + claim (CAS create)
    await step(renew, r); // a host holding its lease: list + renew (no write while fresh)
  }
  const f = (x: typeof claim): string => `${med(x.wall).padStart(6)} ms wall ${med(x.cpu).padStart(6)} ms CPU`;
  console.log(`  ${label.padEnd(44)} claim ${f(claim)}   renew ${f(renew)}`);
}

try {
  console.log(`overlay leases on the file store, 200 hosts' leases, medians of ${ROUNDS} (store step of an ADD, fresh process state):`);
  await scenario('leases only', 0);
  await scenario('beside 1000 Endpoint objects (agent store)', 1000);
} finally {
  rmSync(root, { recursive: true, force: true });
}
