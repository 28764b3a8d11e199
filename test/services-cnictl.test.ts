/**
 * cnictl and services, as a user runs it: the built dist/bin/cnictl inside a test netns (its
 * conntrack listing reads that netns only), a temp agent config and file store. Bad input is
 * refused whole with clear errors; get/describe show VIP, algorithm and backends.
 */
import { execa } from 'execa';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cleanup, makeNetns, type TestNetns } from './helpers/netns.ts';
import { BIN, uid } from './helpers/run.ts';

const cleanup = new Cleanup();
let ns: TestNetns;
let dir = '';
let config = '';

async function cnictl(args: string[], input = ''): Promise<{ code: number; out: string; err: string }> {
  const r = await execa('nsenter', [`--net=${ns.path}`, '--', path.join(BIN, 'cnictl'), '--config', config, ...args], {
    input,
    reject: false,
    env: { PATH: process.env.PATH ?? '' },
    extendEnv: false,
  });
  return { code: r.exitCode ?? -1, out: String(r.stdout), err: String(r.stderr) };
}

const svc = (name: string, extra = '', annotations = ''): string => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: x
  annotations: {${annotations}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
${extra}`;

const EPS = ['a', 'b']
  .map(
    (n, i) => `apiVersion: cni-ts.dev/v1
kind: Endpoint
metadata: {name: web-${n}, namespace: x, labels: {app: web${i === 0 ? ', lb.cni-ts.dev/weight: "3"' : ''}}}
spec: {node: n1, network: net, containerId: c${n}, ifname: eth0, ips: [10.0.0.${5 + i}/24], ports: [{name: http, containerPort: 8080}]}`,
  )
  .join('\n---\n');

beforeAll(async () => {
  ns = await makeNetns(cleanup, `hv-${uid('')}`);
  dir = path.join('/run', `cnits-${uid('hv')}`);
  mkdirSync(path.join(dir, 'store'), { recursive: true });
  cleanup.add(async () => rmSync(dir, { recursive: true, force: true }));
  config = path.join(dir, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify({ store: { type: 'file', path: path.join(dir, 'store') }, node: 'n1', serviceCIDR: ['10.96.0.0/16'] }),
  );
  const r = await cnictl(
    ['apply', '-f', '-'],
    `${EPS}\n---\n${svc('web', '  clusterIP: 10.96.0.10', '"lb.cni-ts.dev/algorithm": weighted-round-robin')}`,
  );
  expect(r.code, r.err).toBe(0);
}, 60_000);
afterAll(() => cleanup.run());

describe('cnictl apply: services bad input, nothing applied', () => {
  it.each([
    ['unknown algorithm', svc('s1', '', '"lb.cni-ts.dev/algorithm": fastest'), /lb.cni-ts.dev\/algorithm: unknown algorithm "fastest"/],
    ['bad health JSON', svc('s2', '', `"health.cni-ts.dev/check": '{"type": "tcp",'`), /health.cni-ts.dev\/check: not valid JSON/],
    ['bad health type', svc('s3', '', `"health.cni-ts.dev/check": '{"type": "icmp"}'`), /type must be "tcp" or "http"/],
    ['VIP outside serviceCIDR', svc('s4', '  clusterIP: 10.200.0.1'), /10.200.0.1 is outside serviceCIDR 10.96.0.0\/16/],
    ['VIP taken', svc('s5', '  clusterIP: 10.96.0.10'), /10.96.0.10 is taken by Service x\/web/],
    [
      'port conflict',
      svc('s6', '  clusterIP: 10.96.0.11').replace(
        'ports: [{name: http, port: 80, targetPort: http}]',
        'ports: [{name: a, port: 80}, {name: b, port: 80}]',
      ),
      /80\/TCP is also spec.ports\[0\] \(port conflict\)/,
    ],
    [
      'bad weight',
      'apiVersion: cni-ts.dev/v1\nkind: Endpoint\nmetadata: {name: w, namespace: x, labels: {lb.cni-ts.dev/weight: "-1"}}\nspec: {node: n1, network: net, containerId: w, ifname: eth0, ips: [10.0.0.9/24]}',
      /lb.cni-ts.dev\/weight: weight "-1" must be an integer 0 to 1000/,
    ],
  ])('%s', async (_what, doc, msg) => {
    const r = await cnictl(['apply', '-f', '-'], `${doc}\n---\n${svc('ok-too', '  clusterIP: 10.96.0.12')}`);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(msg);
    expect(r.err).toMatch(/nothing applied/);
    expect((await cnictl(['get', 'svc', 'ok-too', '-n', 'x'])).code).toBe(1);
  });
});

describe('cnictl get/describe services', () => {
  it('get services: VIP, ports, algorithm, backends; -o wide: their state and connections', async () => {
    const r = await cnictl(['get', 'services', '-n', 'x']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/NAME\s+VIP\s+PORT\(S\)\s+ALGORITHM\s+BACKENDS/);
    expect(r.out).toMatch(/web\s+10\.96\.0\.10\s+80\/TCP\s+weighted-round-robin\s+2\/2/);
    const w = await cnictl(['get', 'services', '-n', 'x', '-o', 'wide']);
    expect(w.out).toContain('10.0.0.5:8080(healthy,0 conns) 10.0.0.6:8080(healthy,0 conns)');
  });
  it('describe service x/web: every backend with weight and state', async () => {
    const r = await cnictl(['describe', 'service', 'x/web']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/VIP:\s+10\.96\.0\.10/);
    expect(r.out).toMatch(/Algorithm:\s+weighted-round-robin/);
    expect(r.out).toMatch(/10\.0\.0\.5:8080\s+healthy\s+weight 3\s+0 open connections\s+x\/web-a on n1/);
  });
});
