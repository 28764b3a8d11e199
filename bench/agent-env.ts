/**
 * The runtime environment the agent's systemd unit (conf/systemd/cni-ts-agent.service) gives it:
 * its `Environment=` settings of the allocator and the JavaScript engine (MIMALLOC_*, BUN_JSC_*),
 * so a bench that runs agent code outside systemd measures what ships. A tree without the unit
 * file or without such lines gives {}.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export function agentRuntimeEnv(root: string): Record<string, string> {
  const unit = path.join(root, 'conf', 'systemd', 'cni-ts-agent.service');
  if (!existsSync(unit)) return {};
  const env: Record<string, string> = {};
  for (const line of readFileSync(unit, 'utf8').split('\n')) {
    const m = /^Environment=(.*)$/.exec(line.trim());
    if (!m) continue;
    for (const kv of m[1].split(/\s+/)) {
      const [k, ...v] = kv.split('=');
      if (/^(MIMALLOC_|BUN_JSC_)/.test(k)) env[k] = v.join('=');
    }
  }
  return env;
}

/** `K=V K=V` (a bench knob) as an object; undefined for an unset knob. */
export function parseEnvKnob(s: string | undefined): Record<string, string> | undefined {
  if (s === undefined) return undefined;
  return Object.fromEntries(
    s
      .split(/\s+/)
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}
