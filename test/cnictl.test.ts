/**
 * cnictl as a user runs it: the built dist/bin/cnictl, with a temp agent config naming a temp
 * file store (no kernel state is touched).
 */
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, uid, testPort } from './helpers/run.ts';
import { Cleanup } from './helpers/netns.ts';
import { makeEtcd } from './overlay-topology.ts';

let dir = '';
let config = '';
const CNICTL = path.join(BIN, 'cnictl');

async function cnictl(
  args: string[],
  opts: { input?: string; config?: string | null; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string; err: string }> {
  const conf = opts.config === null ? [] : ['--config', opts.config ?? config];
  const r = await execa(CNICTL, [...conf, ...args], {
    input: opts.input ?? '',
    reject: false,
    env: { PATH: process.env.PATH ?? '', ...(opts.env ?? {}) },
    extendEnv: false,
  });
  return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
}

const MANIFEST = `
apiVersion: v1
kind: Namespace
metadata:
  name: x
  labels: {team: payments}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec:
  podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: fe}}}]
    ports: [{port: 80}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: ops}
spec:
  priority: 10
  subject: {namespaces: {matchLabels: {team: payments}}}
  ingress: [{action: Allow, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]}]
---
apiVersion: cni-ts.dev/v1
kind: Endpoint
metadata: {name: web-1, namespace: x, labels: {app: web}}
spec: {node: n1, network: net, containerId: 0123456789abcdef, ifname: eth0, ips: [10.0.0.5/24], hostInterface: veth1}
`;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), `hs-cnictl-${uid('')}-`));
  config = path.join(dir, 'agent.json');
  writeFileSync(config, JSON.stringify({ store: { type: 'file', path: path.join(dir, 'store') } }));
  writeFileSync(path.join(dir, 'm.yaml'), MANIFEST);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('cnictl', () => {
  it('applies a multi-document manifest, then leaves identical objects alone', async () => {
    const a = await cnictl(['apply', '-f', path.join(dir, 'm.yaml'), '-n', 'x']);
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    expect(a.out.trim().split('\n')).toEqual([
      'namespace/x created',
      'networkpolicy.networking.k8s.io/deny-all created',
      'networkpolicy.networking.k8s.io/allow-web created',
      'adminnetworkpolicy.policy.networking.k8s.io/ops created',
      'endpoint.cni-ts.dev/web-1 created',
    ]);
    const b = await cnictl(['apply', '-f', path.join(dir, 'm.yaml'), '-n', 'x']);
    expect(b.out.match(/unchanged/g)).toHaveLength(5);
  });

  it('get: tables, -A, -o json|yaml|name, one object by name', async () => {
    const t = await cnictl(['get', 'networkpolicies', '-n', 'x']);
    expect(t.code).toBe(0);
    expect(t.out.split('\n')[0]).toMatch(/^NAME\s+POD-SELECTOR\s+POLICY-TYPES$/);
    expect(t.out).toMatch(/allow-web\s+app=web\s+Ingress/);
    const all = await cnictl(['get', 'policies', '-A']);
    expect(all.out).toMatch(/AdminNetworkPolicy\s+-\s+ops\s+10\s+namespaces: team=payments/);
    expect(all.out).toMatch(/NetworkPolicy\s+x\s+deny-all/);
    const ep = await cnictl(['get', 'endpoints', '-A', '-o', 'wide']);
    expect(ep.out).toMatch(/x\s+web-1\s+10\.0\.0\.5\s+n1\s+net\s+0123456789ab\s+eth0\s+veth1\s+app=web/);
    const j = await cnictl(['get', 'netpol', '-n', 'x', '-o', 'json']);
    const list = JSON.parse(j.out) as { kind: string; items: Array<{ metadata: { name: string }; spec: { policyTypes: string[] } }> };
    expect(list.kind).toBe('List');
    expect(list.items.map((i) => i.metadata.name).sort()).toEqual(['allow-web', 'deny-all']);
    // stored with the API server's defaults
    expect(list.items[0]?.spec.policyTypes).toEqual(['Ingress']);
    const y = await cnictl(['get', 'endpoint', 'x/web-1', '-o', 'yaml']);
    expect(y.out).toContain('kind: Endpoint');
    expect(y.out).toMatch(/resourceVersion: "\d+"/);
    expect((await cnictl(['get', 'ns', '-o', 'name'])).out.trim()).toBe('namespace/x');
    expect((await cnictl(['get', 'ep', '-A', '-l', 'app in (web,db)', '-o', 'name'])).out).toBe('endpoint.cni-ts.dev/web-1');
    expect((await cnictl(['get', 'ep', '-A', '-l', 'app!=web'])).err).toContain('No resources found');
    expect((await cnictl(['get', 'ep', '-A', '-l', 'a in ()'])).code).toBe(2);
    const none = await cnictl(['get', 'services']);
    expect(none.code).toBe(0);
    expect(none.err).toContain('No resources found in default namespace.');
    const missing = await cnictl(['get', 'netpol', 'nope', '-n', 'x']);
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('networkpolicies "nope" not found in namespace x');
  });

  it('describe endpoint lists the policies that select it', async () => {
    const d = await cnictl(['describe', 'endpoint', 'x/web-1']);
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/IPs:\s+10\.0\.0\.5\/24/);
    const sel = d.out.slice(d.out.indexOf('Selected by policies'));
    expect(sel).toMatch(/AdminNetworkPolicy\s+ops\s+priority 10/);
    expect(sel).toMatch(/NetworkPolicy\s+x\/allow-web/);
    expect(sel).toMatch(/NetworkPolicy\s+x\/deny-all/);
    const p = await cnictl(['describe', 'netpol', 'x/allow-web']);
    expect(p.out).toMatch(/Selects endpoints:\s+x\/web-1/);
  });

  it('an invalid document applies nothing and names the document, kind, name and field', async () => {
    const bad = `${MANIFEST.replace('name: x\n', 'name: fresh\n').replace(/namespace: x/g, 'namespace: fresh')}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broken, namespace: fresh}
spec:
  podSelector: {}
  ingress:
  - ports: [{port: 70000}]
`;
    const r = await cnictl(['apply', '-f', '-'], { input: bad });
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      'stdin: document 6 (NetworkPolicy fresh/broken): spec.ingress[0].ports[0].port: 70000 is not a port number (1-65535)',
    );
    expect(r.err).toContain('nothing applied');
    expect(r.out).toBe('');
    expect((await cnictl(['get', 'netpol', '-n', 'fresh'])).err).toContain('No resources found');
    expect((await cnictl(['get', 'ns', 'fresh'])).code).toBe(1);
    // a directory: its manifests in name order, each problem naming its file
    const d = path.join(dir, 'manifests');
    mkdirSync(d);
    writeFileSync(path.join(d, 'a.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: from-dir}\n');
    writeFileSync(path.join(d, 'b.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'Bad_Name' } }));
    writeFileSync(path.join(d, 'notes.txt'), 'not a manifest');
    const dr = await cnictl(['apply', '-f', d]);
    expect(dr.code).toBe(1);
    expect(dr.err).toContain(`${path.join(d, 'b.json')}: document 1 (Namespace Bad_Name): metadata.name:`);
    rmSync(path.join(d, 'b.json'));
    expect((await cnictl(['apply', '-f', d])).out).toBe('namespace/from-dir created');
    expect((await cnictl(['delete', '-f', d])).out).toBe('namespace/from-dir deleted');
    const yaml = await cnictl(['apply', '-f', '-'], { input: 'kind: [\n' });
    expect(yaml.code).toBe(1);
    expect(yaml.err).toMatch(/stdin: document 1: not valid YAML or JSON \(line \d+/);
  });

  it('label: --overwrite to change a value, k- to remove, CAS under concurrent writers', async () => {
    const no = await cnictl(['label', 'endpoint', 'x/web-1', 'app=db']);
    expect(no.code).toBe(1);
    expect(no.err).toContain("'app' already has a value (web), and --overwrite is false");
    expect((await cnictl(['label', 'endpoint', 'x/web-1', 'app=db', 'tier=be', '--overwrite'])).out).toBe(
      'endpoint.cni-ts.dev/web-1 labeled',
    );
    expect((await cnictl(['label', 'endpoint', 'web-1', '-n', 'x', 'tier-'])).code).toBe(0);
    const got = JSON.parse((await cnictl(['get', 'ep', 'x/web-1', '-o', 'json'])).out) as { metadata: { labels: Record<string, string> } };
    expect(got.metadata.labels).toEqual({ app: 'db' });
    // ten cnictl processes label the same endpoint at once: every label lands
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => cnictl(['label', 'endpoint', 'x/web-1', `k${i}=v${i}`])));
    for (const r of runs) expect(r.code, r.err).toBe(0);
    const after = JSON.parse((await cnictl(['get', 'ep', 'x/web-1', '-o', 'json'])).out) as {
      metadata: { labels: Record<string, string> };
    };
    expect(Object.keys(after.metadata.labels).sort()).toEqual(['app', ...Array.from({ length: 10 }, (_, i) => `k${i}`)].sort());
    // a namespace nobody applied is created with its labels; its name label is not ours to change
    expect((await cnictl(['label', 'namespace', 'y', 'ns=y'])).out).toBe('namespace/y created and labeled');
    expect((await cnictl(['label', 'ns', 'y', 'kubernetes.io/metadata.name=z'])).code).toBe(1);
    expect((await cnictl(['label', 'endpoint', 'x/absent', 'a=b'])).code).toBe(1);
  }, 60_000);

  it('get -w prints what there is, then every change, until interrupted', async () => {
    const ep = {
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name: 'w1', namespace: 'w', labels: { app: 'w' } },
      spec: { node: 'n1', network: 'net', containerId: 'c1', ifname: 'eth0', ips: ['10.0.9.1/24'] },
    };
    expect((await cnictl(['apply', '-f', '-'], { input: JSON.stringify(ep) })).code).toBe(0);
    const p = execa(CNICTL, ['--config', config, 'get', 'endpoints', '-n', 'w', '-w', '-o', 'json'], {
      reject: false,
      env: { PATH: process.env.PATH ?? '' },
      extendEnv: false,
    });
    let out = '';
    p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const events = (): string[] =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const e = JSON.parse(l) as { type: string; object: { metadata: { name: string } } };
          return `${e.type} ${e.object.metadata.name}`;
        });
    const until = async (want: string): Promise<boolean> => {
      for (let i = 0; i < 100; i++) {
        if (events().includes(want)) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };
    try {
      // listed first, so the changes below can only come from the watch
      expect(await until('ADDED w1')).toBe(true);
      expect((await cnictl(['label', 'ep', 'w/w1', 'x=y'])).code).toBe(0);
      expect(await until('MODIFIED w1')).toBe(true);
      expect((await cnictl(['delete', 'ep', 'w/w1'])).code).toBe(0);
      expect(await until('DELETED w1')).toBe(true);
      expect(events()).toEqual(['ADDED w1', 'MODIFIED w1', 'DELETED w1']);
    } finally {
      p.kill('SIGTERM');
    }
    expect((await p).exitCode).toBe(0);
  }, 60_000);

  it('delete -f and delete KIND NAME; not found is an error', async () => {
    const d = await cnictl(['delete', 'networkpolicy', 'x/deny-all']);
    expect(d.out).toBe('networkpolicy.networking.k8s.io/deny-all deleted');
    const f = await cnictl(['delete', '-f', path.join(dir, 'm.yaml'), '-n', 'x']);
    expect(f.code).toBe(1); // deny-all is already gone
    expect(f.err).toContain('NetworkPolicy x/deny-all not found');
    expect(f.out).toContain('endpoint.cni-ts.dev/web-1 deleted');
    expect((await cnictl(['delete', '-f', path.join(dir, 'm.yaml'), '-n', 'x', '--ignore-not-found'])).code).toBe(0);
    expect((await cnictl(['get', 'policies', '-A'])).err).toContain('No resources found');
  });

  it('exit code 2 for usage errors; the config comes from --config or CNI_TS_CONFIG', async () => {
    expect((await cnictl([])).code).toBe(2);
    expect((await cnictl(['frobnicate'])).code).toBe(2);
    expect((await cnictl(['get'])).code).toBe(2);
    expect((await cnictl(['get', 'ep', '--bogus'])).code).toBe(2);
    expect((await cnictl(['get', 'pods'])).code).toBe(2);
    expect((await cnictl(['apply'])).code).toBe(2);
    expect((await cnictl(['label', 'ep', 'x/a', 'no_equals'])).code).toBe(2);
    const help = await cnictl(['get', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('usage: cnictl get');
    // CNI_TS_CONFIG
    expect((await cnictl(['get', 'ns', 'y', '-o', 'name'], { config: null, env: { CNI_TS_CONFIG: config } })).out).toBe('namespace/y');
    const missing = await cnictl(['get', 'ns'], { config: path.join(dir, 'absent.json') });
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('absent.json: no such file');
    // a store that cannot be reached
    const down = path.join(dir, 'down.json');
    writeFileSync(down, JSON.stringify({ store: { type: 'etcd', endpoints: ['127.0.0.1:1'] } }));
    const r = await cnictl(['get', 'ns'], { config: down });
    expect(r.code).toBe(1);
    expect(r.err).toContain('store unavailable');
  });
});

describe('cnictl with the etcd store', () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());
  it('applies, lists, labels and deletes through etcd', async () => {
    const port = testPort();
    const etcd = makeEtcd(cleanup, dir, undefined, '127.0.0.1', port, port + 1);
    await etcd.start();
    const conf = path.join(dir, 'etcd-agent.json');
    writeFileSync(conf, JSON.stringify({ store: { type: 'etcd', endpoints: [etcd.endpoint], prefix: `/hs-test/${uid('')}` } }));
    const a = await cnictl(['apply', '-f', path.join(dir, 'm.yaml'), '-n', 'x'], { config: conf });
    expect(a.err).toBe('');
    expect(a.out.match(/created/g)).toHaveLength(5);
    expect((await cnictl(['get', 'policies', '-A', '-o', 'name'], { config: conf })).out.split('\n').sort()).toEqual([
      'adminnetworkpolicy.policy.networking.k8s.io/ops',
      'networkpolicy.networking.k8s.io/allow-web',
      'networkpolicy.networking.k8s.io/deny-all',
    ]);
    expect((await cnictl(['label', 'ep', 'x/web-1', 'tier=fe'], { config: conf })).code).toBe(0);
    expect((await cnictl(['get', 'ep', '-n', 'x', '-l', 'tier=fe', '-o', 'name'], { config: conf })).out).toBe('endpoint.cni-ts.dev/web-1');
    expect((await cnictl(['delete', '-f', path.join(dir, 'm.yaml'), '-n', 'x'], { config: conf })).out.match(/deleted/g)).toHaveLength(5);
  }, 120_000); // etcd's start (up to 60 s on a loaded machine) is part of it
});
