/**
 * In-process netlink/setns/flock (docs/netlink.md) against the process fallback and the Go
 * reference, interleaved call by call: bridge + host-local ADD+DEL, without and with ipMasq,
 * and with ipMasq + portmap (the chain). A fourth side keeps netlink but starts `nft`
 * (CNI_TS_LIBNFTABLES=none: libnftables cannot load, the automatic fallback).
 * Wall time and CPU (user+sys of the plugin and every process it waited for, from
 * /usr/bin/time), the second being what a busy machine cannot inflate much. As root:
 *   BENCH_ITER=20 node --experimental-strip-types bench/netlink.ts
 * Everything inside a "host" netns nlb-<hex> and per-iteration container netns, removed at the end.
 */
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OURS = path.join(ROOT, 'dist', 'bin');
const REF = '/usr/lib/cni';
const ITER = Number(process.env.BENCH_ITER ?? 20);
const tag = Math.random().toString(16).slice(2, 8);
const HOST = `nlb-${tag}`;
const work = mkdtempSync(path.join(os.tmpdir(), 'nlb-'));

interface Side {
  name: string;
  bin: string;
  env: Record<string, string>;
}
const SIDES: Side[] = [
  { name: 'reference (Go)', bin: REF, env: {} },
  { name: 'cni-ts netlink + nf_tables netlink (default)', bin: OURS, env: {} },
  // the plugins' firewall verbs through libnftables, as before session 4 (docs/netlink.md)
  { name: 'cni-ts netlink + libnftables', bin: OURS, env: { CNI_TS_NFT_NETLINK: '0' } },
  // libnftables not loadable and the firewall verbs on it: the automatic fallback, netlink for
  // links but `nft` processes (with libnftables missing alone, the verbs stay nf_tables netlink)
  { name: 'cni-ts netlink, nft process', bin: OURS, env: { CNI_TS_LIBNFTABLES: 'none', CNI_TS_NFT_NETLINK: '0' } },
  { name: 'cni-ts CNI_TS_NETLINK=0', bin: OURS, env: { CNI_TS_NETLINK: '0' } },
];

const sh = (cmd: string, args: string[]) => execa(cmd, args, { reject: false });

async function call(
  side: Side,
  command: string,
  conf: Record<string, unknown>,
  ns: string,
  id: string,
  plugin = 'bridge',
): Promise<{ wall: number; cpu: number; ok: boolean; stdout: string }> {
  const timeFile = path.join(work, `time-${id}`);
  const t0 = performance.now();
  const r = await execa(
    'nsenter',
    [`--net=/run/netns/${HOST}`, '--', '/usr/bin/time', '-o', timeFile, '-f', '%U %S', path.join(side.bin, plugin)],
    {
      input: JSON.stringify(conf),
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: `/run/netns/${ns}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: side.bin,
        ...side.env,
      },
      extendEnv: false,
      reject: false,
    },
  );
  const wall = performance.now() - t0;
  const [u, s] = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  return { wall, cpu: (u + s) * 1000, ok: r.exitCode === 0, stdout: String(r.stdout) };
}

const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

async function main(): Promise<void> {
  await sh('ip', ['netns', 'add', HOST]);
  await sh('ip', ['-n', HOST, 'link', 'set', 'lo', 'up']);
  const rows: string[] = [];
  try {
    // 0: bridge + host-local, 1: + ipMasq, 2: + ipMasq + portmap (one mapping)
    for (const [k, [masq, portmap]] of [
      [false, false],
      [true, false],
      [true, true],
    ].entries()) {
      const res = SIDES.map(() => ({ wall: [] as number[], cpu: [] as number[], fail: 0 }));
      for (let i = 0; i <= ITER; i++) {
        for (const [j, side] of SIDES.entries()) {
          const ns = `nlb-${tag}-${k}${j}-${i}`;
          await sh('ip', ['netns', 'add', ns]);
          const conf = {
            cniVersion: '1.0.0',
            name: `nlb-${tag}-${k}${j}`,
            type: 'bridge',
            bridge: `nlb${tag}${k}${j}`,
            isGateway: true,
            ipMasq: masq,
            ipam: { type: 'host-local', subnet: `10.${150 + j}.${k}.0/24`, dataDir: path.join(work, 'ipam') },
          };
          const add = await call(side, 'ADD', conf, ns, ns);
          const steps = [add];
          if (portmap && add.ok) {
            const pm = {
              cniVersion: '1.0.0',
              name: conf.name,
              type: 'portmap',
              runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] },
              prevResult: JSON.parse(add.stdout) as unknown,
            };
            steps.push(await call(side, 'ADD', pm, ns, ns, 'portmap'));
            steps.push(await call(side, 'DEL', pm, ns, ns, 'portmap'));
          }
          steps.push(await call(side, 'DEL', conf, ns, ns));
          await sh('ip', ['netns', 'del', ns]);
          if (steps.some((x) => !x.ok)) res[j].fail++;
          else if (i > 0) {
            res[j].wall.push(steps.reduce((a, x) => a + x.wall, 0));
            res[j].cpu.push(steps.reduce((a, x) => a + x.cpu, 0));
          }
        }
      }
      const ref = res[0];
      for (const [j, side] of SIDES.entries()) {
        const r = res[j];
        const line = `| bridge + host-local${masq ? ' + ipMasq' : ''}${portmap ? ' + portmap' : ''} | ${side.name} | ${median(r.wall).toFixed(0)} | ${(median(r.wall) / median(ref.wall)).toFixed(2)}× | ${median(r.cpu).toFixed(0)} | ${(median(r.cpu) / median(ref.cpu)).toFixed(2)}× | ${r.fail} |`;
        rows.push(line);
        console.log(line);
      }
    }
  } finally {
    // the host netns takes the bridges, rules and sysctls with it
    await sh('ip', ['netns', 'del', HOST]);
    const left = (await sh('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`nlb-${tag}`));
    for (const l of left) await sh('ip', ['netns', 'del', l.split(' ')[0]]);
    rmSync(work, { recursive: true, force: true });
  }
  const load = os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
  console.log(
    `\n${ITER} interleaved iterations, ADD+DEL medians in ms (wall; CPU = user+sys of the plugin and its children), load average ${load}`,
  );
  console.log('| chain | side | wall | / ref | CPU | / ref | failures |\n|---|---|---|---|---|---|---|');
  console.log(rows.join('\n'));
}

await main();
