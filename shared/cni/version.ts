import { CniError, ErrorCode } from './errors.ts';

export const SUPPORTED_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SpecVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST: SpecVersion = '1.1.0';

const SEMVER = /^(\d+)\.(\d+)\.(\d+)$/;

export function parseSemver(v: string): [number, number, number] | null {
  const m = SEMVER.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

/** Compare two x.y.z versions; non-semver strings sort lowest. */
export function compareVersions(a: string, b: string): number {
  const pa = parseSemver(a) ?? [-1, 0, 0];
  const pb = parseSemver(b) ?? [-1, 0, 0];
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}

export const atLeast = (v: string, min: string): boolean => compareVersions(v, min) >= 0;

export function isSupported(v: unknown): v is SpecVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/**
 * Pick the version a config speaks. `cniVersion` wins when we support it (runtimes rewrite it
 * to the negotiated version); otherwise the highest supported entry of `cniVersions` (1.1.0
 * negotiation). A missing `cniVersion` means 0.1.0, as the reference does.
 */
export function negotiate(cniVersion: unknown, cniVersions?: unknown): SpecVersion {
  // A missing, empty or null cniVersion is 0.1.0, as the reference reads it.
  const primary = cniVersion === undefined || cniVersion === null || cniVersion === '' ? '0.1.0' : cniVersion;
  if (typeof primary !== 'string') {
    throw new CniError(ErrorCode.DecodeFailure, 'cniVersion must be a string', `got ${JSON.stringify(cniVersion)}`);
  }
  if (isSupported(primary)) return primary;
  if (Array.isArray(cniVersions)) {
    const common = cniVersions.filter(isSupported).sort(compareVersions);
    if (common.length > 0) return common[common.length - 1];
  }
  throw new CniError(
    ErrorCode.IncompatibleVersion,
    'incompatible CNI versions',
    `config is "${primary}"${Array.isArray(cniVersions) ? ` (cniVersions ${JSON.stringify(cniVersions)})` : ''}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
  );
}
