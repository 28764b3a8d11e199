/**
 * The plugin directory a runtime under test is pointed at: one private directory per test
 * holding, per plugin name, our executable (a hard link to dist/bin/cni-ts, so a concurrent
 * `make build` cannot swap it mid-test) or a symlink to the Go reference plugin.
 *
 * Choice per plugin (env CNITS_RUNTIME_IMPL):
 *   ours (default) — ours; a plugin of ours that is missing makes the test skip (reason given)
 *   mixed          — ours when it exists, the reference plugin otherwise
 *   reference      — the reference plugins only (to check the harness itself)
 * and CNITS_RUNTIME_REF=portmap,loopback forces the reference for the plugins named (to isolate
 * a failure to one plugin of ours).
 */
import { execa } from 'execa';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, REF_BIN } from '../run.ts';

export type Impl = 'ours' | 'reference';
export type Mode = 'ours' | 'mixed' | 'reference';

export function runtimeMode(env: NodeJS.ProcessEnv = process.env): Mode {
  const m = env.CNITS_RUNTIME_IMPL;
  return m === 'reference' || m === 'mixed' ? m : 'ours';
}

/** '' when our executable answers as plugin `name` (registered and not a placeholder), else why not. */
export async function oursMissing(name: string): Promise<string> {
  const exe = path.join(BIN, name);
  if (!existsSync(exe)) return `dist/bin/${name} does not exist (run make build)`;
  const v = await execa(exe, [], { env: { CNI_COMMAND: 'VERSION' }, extendEnv: false, input: '{"cniVersion":"1.0.0"}', reject: false });
  if (v.exitCode !== 0 || !String(v.stdout).includes('supportedVersions')) return `our ${name} is not registered in names.ts yet`;
  const about = await execa(exe, ['--help'], { reject: false, extendEnv: false, env: {} });
  if (/placeholder/i.test(`${String(about.stdout)} ${String(about.stderr)}`)) return `our ${name} is still a placeholder`;
  return '';
}

export interface PluginPlan {
  /** implementation chosen per plugin name */
  impl: Record<string, Impl>;
  /** non-empty: the test cannot run in this mode, and this says why */
  skip: string;
}

/** Decide ours/reference for each plugin name; a missing one of ours yields a skip reason in mode "ours". */
export async function planPlugins(
  names: string[],
  mode: Mode = runtimeMode(),
  forceRef = (process.env.CNITS_RUNTIME_REF ?? '').split(','),
): Promise<PluginPlan> {
  const impl: Record<string, Impl> = {};
  const missing: string[] = [];
  for (const n of names) {
    if (mode === 'reference' || forceRef.includes(n)) {
      impl[n] = 'reference';
      continue;
    }
    const why = await oursMissing(n);
    if (!why) impl[n] = 'ours';
    else {
      impl[n] = 'reference';
      if (mode === 'ours') missing.push(why);
    }
  }
  const skip = missing.length ? `${missing.join('; ')} (set CNITS_RUNTIME_IMPL=mixed to use the reference plugin instead)` : '';
  return { impl, skip };
}

/**
 * Fill `dir` with the chosen plugins: hard links to our binary (copy if linking fails), symlinks
 * to the reference. With env CNITS_RUNTIME_TRACE=<dir> (debugging only) each plugin is wrapped by
 * a script that saves every call's environment and stdin there.
 */
export function populatePluginDir(dir: string, plan: PluginPlan, trace = process.env.CNITS_RUNTIME_TRACE): void {
  mkdirSync(dir, { recursive: true });
  if (trace) {
    const real = path.join(dir, 'real');
    populatePluginDir(real, plan, '');
    mkdirSync(trace, { recursive: true });
    for (const name of Object.keys(plan.impl)) {
      const f = path.join(dir, name);
      writeFileSync(
        f,
        `#!/bin/bash\nt=${trace}/$(date +%s%N)-${name}-$CNI_COMMAND\nenv | grep ^CNI_ > $t.env\ntee $t.in | ${real}/${name} | tee $t.out; rc=\${PIPESTATUS[1]}\necho $rc > $t.rc\nexit $rc\n`,
      );
      chmodSync(f, 0o755);
    }
    return;
  }
  const ours = path.join(dir, 'cni-ts');
  for (const [name, impl] of Object.entries(plan.impl)) {
    const dst = path.join(dir, name);
    if (impl === 'reference') {
      symlinkSync(path.join(REF_BIN, name), dst);
      continue;
    }
    if (!existsSync(ours)) {
      try {
        linkSync(path.join(BIN, 'cni-ts'), ours);
      } catch {
        copyFileSync(path.join(BIN, 'cni-ts'), ours);
      }
    }
    linkSync(ours, dst);
  }
}

export function describePlan(plan: PluginPlan): string {
  return Object.entries(plan.impl)
    .map(([n, i]) => `${n}=${i}`)
    .join(' ');
}
