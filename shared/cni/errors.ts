/** CNI error codes (spec 1.1.0, section 5 "Error") plus this suite's own (100+). */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IOFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  NotAvailable: 50,
  NotAvailableLimitedConnectivity: 51,
  /** A kernel tool (ip, nft, ...) refused an operation. */
  KernelOperation: 100,
  /** The running kernel lacks a feature the config asks for. */
  KernelFeatureMissing: 101,
  /** A resource the request needs is held by someone else (address, device, port). */
  Conflict: 102,
  /** Address pool exhausted. */
  PoolExhausted: 103,
  /** A delegated plugin failed without a parseable error. */
  DelegateFailed: 104,
  /** CHECK found state that differs from prevResult. */
  CheckMismatch: 105,
  Internal: 999,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export class CniError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, msg: string, details = '') {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
  toJSON(cniVersion: string): Record<string, unknown> {
    const out: Record<string, unknown> = { cniVersion, code: this.code, msg: this.message };
    if (this.details) out.details = this.details;
    return out;
  }
}

/**
 * An error a delegated plugin returned: `message` is its cause without any plugin name, and
 * `details` says which delegate(s) it came through. The engine of the plugin the runtime
 * called prefixes its own name once (nested delegation never doubles names).
 */
export class DelegatedError extends CniError {
  constructor(code: number, cause: string, details = '') {
    super(code, cause, details);
    this.name = 'DelegatedError';
  }
}

/**
 * Strip the plugin names a delegate's error message starts with ("bridge: host-local: ..."),
 * down to the cause. `names` are the plugin names to strip (the delegate's own type first).
 */
export function causeOf(msg: string, names: string[]): string {
  let m = msg;
  for (let again = true; again;) {
    again = false;
    for (const n of names) {
      if (n && m.startsWith(`${n}: `)) {
        m = m.slice(n.length + 2);
        again = true;
      }
    }
  }
  return m;
}

/** Turn anything thrown into a CniError without losing a CniError's code. */
export function asCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof Error) return new CniError(ErrorCode.Internal, err.message.split('\n')[0] ?? 'internal error', err.message);
  return new CniError(ErrorCode.Internal, String(err));
}

export const invalidConfig = (field: string, why: string): CniError =>
  new CniError(ErrorCode.InvalidConfig, `invalid network config: ${field}: ${why}`, `field "${field}"`);

/** Code 2: a known key whose value this plugin (or this setup) does not support. */
export const unsupportedField = (field: string, value: unknown, why: string): CniError =>
  new CniError(ErrorCode.UnsupportedField, `unsupported field ${field}=${JSON.stringify(value)}: ${why}`, `field "${field}"`);
