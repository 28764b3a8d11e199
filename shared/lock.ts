/**
 * A lock file around shared on-disk state (IPAM stores, bridge creation), held briefly.
 * proper-lockfile: mkdir-based, stale locks of dead holders are taken over.
 */
import { mkdirSync } from 'node:fs';
import lockfile from 'proper-lockfile';
import { CniError, ErrorCode } from './cni/errors.ts';

export async function withLock<T>(dir: string, body: () => Promise<T>, name = 'lock'): Promise<T> {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dir, {
      lockfilePath: `${dir}/${name}`,
      realpath: false,
      stale: 10_000,
      update: 2_000,
      retries: { retries: 4000, minTimeout: 2, maxTimeout: 25, factor: 1.3, randomize: true },
    });
  } catch (e) {
    throw new CniError(ErrorCode.TryAgainLater, `could not lock ${dir}`, (e as Error).message);
  }
  try {
    return await body();
  } finally {
    await release().catch(() => undefined);
  }
}
