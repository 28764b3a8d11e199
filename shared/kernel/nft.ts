/** nftables through `nft -f -` transactions (atomic) and `nft -j` for reading. */
import { run } from './exec.ts';

export async function nftApply(script: string): Promise<void> {
  await run('nft', ['-f', '-'], { input: script });
}

export async function nftJson<T = { nftables: Array<Record<string, unknown>> }>(args: string[]): Promise<T> {
  const r = await run('nft', ['-j', ...args]);
  return JSON.parse(r.stdout || '{"nftables":[]}') as T;
}

/** Whether a table exists, without failing when it does not. */
export async function nftTableExists(family: string, table: string): Promise<boolean> {
  const r = await run('nft', ['list', 'table', family, table], { allowFail: true });
  return r.exitCode === 0;
}

/**
 * The named counters of one table (`nft -j list counters table FAMILY T`), name -> packets and
 * bytes; empty when the table does not exist.
 */
export async function nftCounters(family: string, table: string, netns?: string): Promise<Map<string, { packets: number; bytes: number }>> {
  const r = await run('nft', ['-j', 'list', 'counters', 'table', family, table], { netns, allowFail: true });
  const out = new Map<string, { packets: number; bytes: number }>();
  if (r.exitCode !== 0) return out;
  const parsed = JSON.parse(r.stdout || '{"nftables":[]}') as { nftables?: Array<{ counter?: { name?: string; packets?: number; bytes?: number } }> };
  for (const o of parsed.nftables ?? []) if (o.counter?.name) out.set(o.counter.name, { packets: o.counter.packets ?? 0, bytes: o.counter.bytes ?? 0 });
  return out;
}
