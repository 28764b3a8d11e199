import { CniError, ErrorCode } from './errors.ts';
import { ifname as ifnameFormat } from './formats.ts';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'] as const;
export type Command = (typeof COMMANDS)[number];

/** CNI_CONTAINERID and network `name`: alphanumeric start, then alphanumerics, `_`, `.`, `-`. */
export const ID_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export interface CniEnv {
  command: Command;
  containerId: string;
  netns: string;
  ifname: string;
  args: Map<string, string>;
  path: string[];
}

type Need = 'required' | 'optional';
const REQUIREMENTS: Record<Command, Partial<Record<'CNI_CONTAINERID' | 'CNI_NETNS' | 'CNI_IFNAME' | 'CNI_PATH', Need>>> = {
  ADD: { CNI_CONTAINERID: 'required', CNI_NETNS: 'required', CNI_IFNAME: 'required', CNI_PATH: 'optional' },
  CHECK: { CNI_CONTAINERID: 'required', CNI_NETNS: 'required', CNI_IFNAME: 'required', CNI_PATH: 'optional' },
  DEL: { CNI_CONTAINERID: 'required', CNI_NETNS: 'optional', CNI_IFNAME: 'required', CNI_PATH: 'optional' },
  GC: { CNI_PATH: 'required' },
  STATUS: { CNI_PATH: 'optional' },
  VERSION: {},
};

/**
 * Linux interface name rules (IFNAMSIZ 16 with the NUL, no '/', ':' or white space, not . or ..):
 * the schemas' `ifname` format, one rule for CNI_IFNAME of every verb that takes it (ADD, CHECK,
 * DEL) and for the ifnames of GC's attachments.
 */
export const validIfname = ifnameFormat;

export function parseCniArgs(raw: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!raw) return out;
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CniError(ErrorCode.InvalidEnvironment, 'invalid CNI_ARGS', `CNI_ARGS: pair "${pair}" is not KEY=VALUE`);
    out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

export function parseCommand(raw: string | undefined): Command {
  if (!raw || !(COMMANDS as readonly string[]).includes(raw)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `unknown CNI_COMMAND "${raw ?? ''}"`,
      `CNI_COMMAND must be one of ${COMMANDS.join(', ')}`,
    );
  }
  return raw as Command;
}

/** Read and check the CNI_* variables a verb requires (spec section 2). */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = parseCommand(env.CNI_COMMAND);
  const req = REQUIREMENTS[command];
  const missing = (Object.keys(req) as Array<keyof typeof req>).filter((k) => req[k] === 'required' && !env[k]);
  if (missing.length) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `required environment variables missing: ${missing.join(', ')}`,
      `CNI_COMMAND=${command} needs ${missing.join(', ')}`,
    );
  }
  const containerId = req.CNI_CONTAINERID ? (env.CNI_CONTAINERID ?? '') : '';
  if (containerId && !ID_PATTERN.test(containerId)) {
    throw new CniError(ErrorCode.InvalidEnvironment, 'invalid CNI_CONTAINERID', `CNI_CONTAINERID must match ${ID_PATTERN.source}`);
  }
  const ifname = req.CNI_IFNAME ? (env.CNI_IFNAME ?? '') : '';
  if (ifname && !validIfname(ifname)) {
    throw new CniError(ErrorCode.InvalidEnvironment, 'invalid CNI_IFNAME', `CNI_IFNAME "${ifname}" is not a valid Linux interface name`);
  }
  const netns = req.CNI_NETNS ? (env.CNI_NETNS ?? '') : '';
  if (netns && (netns.includes('\0') || !netns.startsWith('/'))) {
    throw new CniError(ErrorCode.InvalidEnvironment, 'invalid CNI_NETNS', 'CNI_NETNS must be an absolute path');
  }
  return {
    command,
    containerId,
    netns,
    ifname,
    args: req.CNI_CONTAINERID ? parseCniArgs(env.CNI_ARGS) : new Map(),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
}
