/**
 * `cnictl diag` wall time (figures printed, not asserted), in throwaway network namespaces
 * (prefix dgb), removed in `finally`: a "node" netns with a bridge and two "pods" a and b on
 * veths, their Endpoint objects in a private file store, a TCP listener in b. BENCH_ITER runs
 * (default 5) of each: ICMP only; with an open port; a refused port; a filtered target (b drops
 * everything: the probes' time bounds decide); with --capture 1 (tcpdump + tshark).
 *
 *   node --experimental-transform-types --no-warnings bench/diag.ts
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Endpoint } from '../shared/objects/types.ts';
import { openStore } from '../shared/store/index.ts';
import { mdTable, ms, netnsBatch, nsPath, sh, stats, uid } from './lib.ts';

const ITER = Number(process.env.BENCH_ITER ?? 5);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CNICTL = path.join(ROOT, 'dist', 'bin', 'cnictl');

async function main(): Promise<void> {
  const id = uid('dgb');
  const [node, a, b] = [`${id}-n`, `${id}-a`, `${id}-b`];
  const dir = mkdtempSync(path.join(os.tmpdir(), `${id}-`));
  let server: ReturnType<typeof spawn> | undefined;
  await netnsBatch('add', [node, a, b]);
  try {
    const br = `${id}br`;
    await sh('ip', ['-batch', '-'], {
      netns: nsPath(node),
      input: [
        `link add ${br} type bridge`,
        `addr add 10.252.7.1/24 dev ${br}`,
        `link set ${br} up`,
        'link set lo up',
        `link add ${id}va type veth peer name eth0 netns ${nsPath(a)}`,
        `link add ${id}vb type veth peer name eth0 netns ${nsPath(b)}`,
        `link set ${id}va master ${br} up`,
        `link set ${id}vb master ${br} up`,
        '',
      ].join('\n'),
    });
    for (const [ns, ip] of [
      [a, '10.252.7.2'],
      [b, '10.252.7.3'],
    ] as const) {
      await sh('ip', ['-batch', '-'], {
        netns: nsPath(ns),
        input: [`addr add ${ip}/24 dev eth0`, 'link set eth0 up', 'link set lo up', ''].join('\n'),
      });
    }
    server = spawn(
      'nsenter',
      [`--net=${nsPath(b)}`, '--', process.execPath, '-e', "require('net').createServer((c) => c.end()).listen(19560)"],
      { stdio: 'ignore' },
    );
    const storePath = path.join(dir, 'store');
    const store = await openStore({ type: 'file', path: storePath });
    const ep = (name: string, ns: string, ip: string, host: string): Endpoint => ({
      apiVersion: 'cni-ts.dev/v1',
      kind: 'Endpoint',
      metadata: { name, namespace: 'bench', labels: { pod: name } },
      spec: {
        node: 'n',
        network: 'bench',
        containerId: `${id}-${name}`,
        ifname: 'eth0',
        ips: [`${ip}/24`],
        hostInterface: host,
        sandbox: nsPath(ns),
        gateways: ['10.252.7.1'],
      },
    });
    await store.put(ep('a', a, '10.252.7.2', `${id}va`));
    await store.put(ep('b', b, '10.252.7.3', `${id}vb`));
    await store.close();
    const config = path.join(dir, 'agent.json');
    writeFileSync(
      config,
      JSON.stringify({
        store: { type: 'file', path: storePath },
        node: 'n',
        socket: path.join(dir, 'agent.sock'),
        policy: { table: `${id}_policy` },
      }),
    );
    const diag = async (args: string[]): Promise<{ ms: number; code: number }> => {
      const t = performance.now();
      const r = await sh(CNICTL, ['--config', config, 'diag', 'connectivity', 'bench/b', '--from', 'bench/a', ...args, '-o', 'json'], {
        netns: nsPath(node),
        allowFail: true,
      });
      return { ms: performance.now() - t, code: r.exitCode };
    };
    await new Promise((r) => setTimeout(r, 500));
    const cases: Array<[string, string[], (() => Promise<void>)?]> = [
      ['ICMP only (ping 3, tracepath, route, policy)', []],
      ['+ --port 19560/tcp (open)', ['--port', '19560/tcp']],
      ['+ --port 19561/tcp (refused)', ['--port', '19561/tcp']],
      ['+ --capture 1 (tcpdump on 2 veths, tshark)', ['--port', '19560/tcp', '--capture', '1']],
      [
        'target drops everything, --port 19560/tcp (time bounds)',
        ['--port', '19560/tcp'],
        async () => {
          await sh('nft', ['-f', '-'], {
            netns: nsPath(b),
            input: `table inet ${id} {\n chain in { type filter hook input priority 0; policy drop; }\n}\n`,
          });
        },
      ],
    ];
    const rows: Array<Array<string | number>> = [];
    for (const [name, args, before] of cases) {
      await before?.();
      const runs: number[] = [];
      let code = -1;
      for (let i = 0; i < ITER; i++) {
        const r = await diag(args);
        runs.push(r.ms);
        code = r.code;
      }
      const s = stats(runs);
      rows.push([name, ITER, ms(s.median), ms(s.min), ms(s.max), code]);
    }
    console.log(
      `cnictl diag connectivity, wall time of the whole command (ms), ${ITER} runs each, ${os.cpus().length} vCPU, load ${os.loadavg()[0]!.toFixed(1)}`,
    );
    console.log(mdTable(['case', 'runs', 'median', 'min', 'max', 'exit code'], rows));
  } finally {
    server?.kill('SIGKILL');
    await netnsBatch('del', [node, a, b]);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
