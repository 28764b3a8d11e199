/**
 * A lock around shared on-disk state or a one-time kernel change (bridge creation, a
 * host-device record, an overlay lease), held briefly: flock(2) on `<dir>/<name>` (see
 * shared/flock.ts). The kernel drops it when the holder dies, so a crash never leaves a stale
 * lock behind; the small lock file itself stays, as the reference host-local's `lock` does.
 */
import { withLockFile } from './flock.ts';

export function withLock<T>(dir: string, body: () => Promise<T>, name = 'lock'): Promise<T> {
  return withLockFile(dir, name, body);
}
