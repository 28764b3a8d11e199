import { readFileSync, writeFileSync } from 'node:fs';
import { run } from './exec.ts';

const keyPath = (key: string): string => `/proc/sys/${key.replace(/\./g, '/')}`;

/** Set sysctls: on the host by writing /proc/sys, in a netns with one `sysctl -w` process. */
export async function setSysctls(values: Record<string, string>, netns?: string): Promise<void> {
  const keys = Object.keys(values);
  if (!keys.length) return;
  if (!netns) {
    for (const k of keys) {
      const p = keyPath(k);
      if (readFileSync(p, 'utf8').trim() !== values[k]) writeFileSync(p, values[k]);
    }
    return;
  }
  await run('sysctl', ['-q', '-w', ...keys.map((k) => `${k}=${values[k]}`)], { netns });
}

export function getSysctl(key: string): string {
  return readFileSync(keyPath(key), 'utf8').trim();
}
