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
