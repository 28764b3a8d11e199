import type { CniEnv } from './env.ts';
import type { Logger } from './log.ts';
import type { Attachment, NetConfBase, Result } from './types.ts';
import type { SpecVersion } from './version.ts';

/** One invocation, parsed and validated by the engine. Plugins never read process.env. */
export interface Request<C extends NetConfBase = NetConfBase> {
  env: CniEnv;
  /** The environment as received, passed on unchanged to delegates. */
  rawEnv: NodeJS.ProcessEnv;
  /** The config object as received (after JSON decoding), for delegation. */
  raw: Record<string, unknown>;
  config: C;
  version: SpecVersion;
  prevResult?: Result;
  log: Logger;
}

export interface GcRequest<C extends NetConfBase = NetConfBase> extends Request<C> {
  /** Union of `cni.dev/valid-attachments` and `cni.dev/attachments`. */
  validAttachments: Attachment[];
}

export interface Plugin<C extends NetConfBase = NetConfBase> {
  /** The executable name and config `type`. */
  name: string;
  /** One line for people who run the executable by hand. */
  about: string;
  /** JSON Schema for the plugin's config (may $ref "netconf#/definitions/..."). */
  schema?: object;
  /**
   * Rewrite the decoded config in place before validation, for spellings real runtimes send
   * that Go's case-insensitive JSON decoding accepts (containerd's `HostPort` for `hostPort`).
   */
  normalize?(raw: Record<string, unknown>, command: string): void;
  /** Semantic checks the schema cannot express; throw code 7 naming the field. */
  validateConfig?(config: C, req: Omit<Request<C>, 'config'>): void;
  add(req: Request<C>): Promise<Result>;
  del(req: Request<C>): Promise<void>;
  check(req: Request<C>): Promise<void>;
  gc?(req: GcRequest<C>): Promise<void>;
  status?(req: Request<C>): Promise<void>;
}

export function definePlugin<C extends NetConfBase>(p: Plugin<C>): Plugin<C> {
  return p;
}
