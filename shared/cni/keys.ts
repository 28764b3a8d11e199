/**
 * Go's encoding/json matches object keys case-insensitively, so runtimes written in Go send
 * e.g. `HostPort` where the convention says `hostPort` (containerd 1.6 does for portMappings)
 * and the Go plugins accept it. These helpers give our plugins the same tolerance for the
 * keys they name, without loosening validation of anything else.
 */
export function canonicalizeKeys(obj: unknown, keys: readonly string[]): void {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return;
  const o = obj as Record<string, unknown>;
  const byLower = new Map(keys.map((k) => [k.toLowerCase(), k]));
  for (const k of Object.keys(o)) {
    const canon = byLower.get(k.toLowerCase());
    if (canon && canon !== k) {
      if (!(canon in o)) o[canon] = o[k];
      delete o[k];
    }
  }
}

/** canonicalizeKeys on every object of a list. */
export function canonicalizeListKeys(list: unknown, keys: readonly string[]): void {
  if (Array.isArray(list)) for (const item of list) canonicalizeKeys(item, keys);
}
