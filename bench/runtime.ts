/**
 * End to end through a real runtime: a private containerd (test/helpers/runtime/containerd.ts:
 * own config, root, state and socket) per side, its CRI `bin_dir` holding either our plugins or
 * the Go reference ones, the same conflist (bridge + host-local + ipMasq, portmap) for both.
 * Timed from the CRI client: RunPodSandbox (netns, CNI ADD of loopback and the chain, sandbox
 * start) and StopPodSandbox + RemovePodSandbox (CNI DEL twice, sandbox teardown). The harness
 * runs it inside its "host" network namespace, so the bridges and rules go with it.
 */
import path from 'node:path';
import { Cleanup } from '../test/helpers/netns.ts';
import { makeContainerd, type Containerd } from '../test/helpers/runtime/containerd.ts';
import type { PluginPlan } from '../test/helpers/runtime/plugins.ts';
import { stats, type Stats } from './lib.ts';

export interface RuntimeSide {
  key: 'ref' | 'ours';
  label: string;
  n: number;
}

export interface RuntimeFigures {
  run: Stats;
  remove: Stats;
  fail: number;
  firstError: string;
}

const CHAIN = ['bridge', 'host-local', 'portmap', 'loopback'];

function conflist(id: string, short: string, s: RuntimeSide, dataDir: string): Record<string, unknown> {
  return {
    cniVersion: '1.0.0',
    name: `${id}-${s.key}-rt`,
    plugins: [
      {
        type: 'bridge',
        bridge: `b${short}${s.key[0]}r`,
        isGateway: true,
        ipMasq: true,
        ipam: { type: 'host-local', subnet: `10.${100 + s.n}.90.0/24`, dataDir },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/**
 * `iter` timed pod lifecycles per side after one warm-up, the sides alternating so both see
 * the same background load.
 */
export async function runtimeLatency(
  sides: RuntimeSide[],
  iter: number,
  id: string,
  short: string,
  work: string,
): Promise<Map<string, RuntimeFigures>> {
  const cleanup = new Cleanup();
  const out = new Map<string, RuntimeFigures>();
  try {
    const per: Array<{ s: RuntimeSide; c: Containerd; runs: number[]; removes: number[]; fail: number; firstError: string }> = [];
    for (const s of sides) {
      const plan: PluginPlan = { impl: Object.fromEntries(CHAIN.map((n) => [n, s.key === 'ours' ? 'ours' : 'reference'])), skip: '' };
      const c = await makeContainerd(cleanup, `${short}${s.key[0]}`, plan, conflist(id, short, s, path.join(work, s.key, 'rt-ipam')));
      per.push({ s, c, runs: [], removes: [], fail: 0, firstError: '' });
    }
    for (let i = 0; i <= iter; i++) {
      for (const p of per) {
        const name = `${short}-${p.s.key}-${i}`;
        try {
          const t0 = performance.now();
          const pod = await p.c.runPod(name, { portMappings: [{ protocol: 'TCP', containerPort: 80, hostPort: 19000 + p.s.n }] });
          const t1 = performance.now();
          await p.c.removePod(pod);
          const t2 = performance.now();
          if (i > 0) {
            p.runs.push(t1 - t0);
            p.removes.push(t2 - t1);
          }
        } catch (e) {
          p.fail++;
          p.firstError ||= (e as Error).message.split('\n')[0].slice(0, 200);
        }
      }
    }
    for (const p of per)
      out.set(p.s.key, {
        run: stats(p.runs.length ? p.runs : [NaN]),
        remove: stats(p.removes.length ? p.removes : [NaN]),
        fail: p.fail,
        firstError: p.firstError,
      });
  } finally {
    await cleanup.run();
  }
  return out;
}
