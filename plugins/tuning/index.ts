/**
 * tuning (chained): sysctls of the container's network namespace (net.* only) and attributes
 * of the container interface (MAC, MTU, promisc, allmulti, txqueuelen, alias). Drop-in for the
 * Go reference `tuning`: same keys, same backup file (`<dataDir>/<containerID>_<ifname>.json`,
 * default /run/cni/tuning) restored on DEL, same pass-through result (the MAC updated).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { getLink, ipBatchThenArgv, type LinkInfo } from '../../shared/kernel/ip.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import { readSysctls, setSysctls } from '../../shared/kernel/sysctl.ts';
import schema from '../../conf/schemas/tuning.schema.json' with { type: 'json' };
import {
  ALLOWLIST_FILE,
  backupName,
  backupOf,
  changesLink,
  checkAllowlist,
  linkCommands,
  linkDrift,
  parseAllowlist,
  resolveTuning,
  wanted,
  type Backup,
  type TuningConf,
  type TuningSettings,
} from './config.ts';

function readAllowlist(): RegExp[] | undefined {
  return parseAllowlist(existsSync(ALLOWLIST_FILE) ? readFileSync(ALLOWLIST_FILE, 'utf8') : undefined);
}

function settings(req: Request<TuningConf>): TuningSettings {
  const s = resolveTuning(req.config, req.env);
  checkAllowlist(
    s.sysctls.map(([k]) => k),
    readAllowlist(),
  );
  return s;
}

const backupFile = (s: TuningSettings, req: Request<TuningConf>): string =>
  path.join(s.dataDir, backupName(req.env.containerId, req.env.ifname));

function readBackup(file: string): Backup | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Backup;
  } catch {
    return undefined;
  }
}

/** Write the backup atomically; a backup already there (a repeated ADD) keeps its values: they are the originals. */
function saveBackup(file: string, b: Backup): void {
  const merged = { ...b, ...(readBackup(file) ?? {}) };
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(merged, null, 1), { mode: 0o600 });
  renameSync(tmp, file);
}

/**
 * Set the attributes of `b` on the link in `netns`: netlink requests in-process (the alias as
 * IFLA_IFALIAS), else one `ip -batch` and the alias apart (it may hold spaces).
 */
async function applyLink(ifname: string, b: Backup, netns: string): Promise<void> {
  const alias = b.alias !== undefined ? [['link', 'set', 'dev', ifname, 'alias', b.alias]] : [];
  await ipBatchThenArgv(linkCommands(ifname, b), alias, netns);
}

async function containerLink(ifname: string, netns: string): Promise<LinkInfo> {
  const l = await getLink(ifname, netns);
  if (!l)
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `interface ${ifname} does not exist in ${netns}`,
      'tuning changes the interface an earlier plugin of the chain made',
    );
  return l;
}

async function add(req: Request<TuningConf>): Promise<Result> {
  const s = settings(req);
  const { netns, ifname } = req.env;
  requireNetns(netns);
  const prev = req.prevResult;
  if (!prev) throw invalidConfig('prevResult', 'is required: tuning runs chained after an interface plugin');
  const file = backupFile(s, req);
  const paths = s.sysctls.map(([, p]) => p);
  // Originals of the sysctls and the link, read together, so a failed ADD puts them back.
  const [oldSysctls, link] = await Promise.all([readSysctls(paths, netns), changesLink(s) ? containerLink(ifname, netns) : undefined]);
  const hadBackup = existsSync(file);
  try {
    // The sysctls and the link attributes do not depend on each other: one round of processes.
    if (link) saveBackup(file, backupOf(s, link));
    const done = await Promise.allSettled([
      setSysctls(Object.fromEntries(s.sysctls.map(([, p, v]) => [p, v])), netns),
      link ? applyLink(ifname, wanted(s), netns) : undefined,
    ]);
    const failed = done.find((d) => d.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (e) {
    const undo = async (): Promise<void> => {
      if (link) await applyLink(ifname, backupOf(s, link), netns);
      await setSysctls(Object.fromEntries(paths.map((p, i) => [p, oldSysctls[i]])), netns);
      if (link && !hadBackup) rmSync(file, { force: true });
    };
    await undo().catch((d: unknown) => req.log.warn(`undo after failed ADD: ${String(d)}`));
    throw e;
  }
  const result: Result = structuredClone(prev);
  if (s.mac) for (const i of result.interfaces ?? []) if (i.name === ifname) i.mac = s.mac;
  return result;
}

async function del(req: Request<TuningConf>): Promise<void> {
  let s: TuningSettings;
  try {
    s = resolveTuning(req.config, req.env);
  } catch {
    s = resolveTuning({ ...req.config, args: undefined, runtimeConfig: undefined, mac: undefined }, { ...req.env, args: new Map() });
  }
  const { netns, ifname } = req.env;
  const file = backupFile(s, req);
  const b = readBackup(file);
  if (!b) return rmSync(file, { force: true });
  // The interface may be gone (the netns deleted, an earlier DEL of the chain): nothing to put back.
  const link = netnsExists(netns) ? await getLink(ifname, netns).catch(() => undefined) : undefined;
  if (link) {
    try {
      await applyLink(ifname, b, netns);
    } catch (e) {
      // As the reference: DEL does not fail on a restore it cannot do (the runtime would retry for ever).
      req.log.warn(`restoring ${ifname} in ${netns} failed: ${String(e)}`);
    }
  }
  rmSync(file, { force: true });
}

const mismatch = (what: string): CniError => new CniError(ErrorCode.CheckMismatch, what);
const words = (v: string): string => v.trim().split(/\s+/).join(' ');

async function check(req: Request<TuningConf>): Promise<void> {
  const s = settings(req);
  const { netns, ifname } = req.env;
  requireNetns(netns);
  const [values, link] = await Promise.all([
    readSysctls(
      s.sysctls.map(([, p]) => p),
      netns,
    ),
    getLink(ifname, netns),
  ]);
  s.sysctls.forEach(([key, , want], i) => {
    if (words(values[i]) !== words(want))
      throw mismatch(`sysctl ${key} is ${JSON.stringify(values[i])}, configured ${JSON.stringify(want)}`);
  });
  if (!link) throw mismatch(`interface ${ifname} is missing in ${netns}`);
  const drift = linkDrift(s, link);
  if (drift) throw mismatch(drift);
}

export default definePlugin<TuningConf>({
  name: 'tuning',
  about:
    'chained: net.* sysctls of the container and attributes of its interface (MAC, MTU, promisc, allmulti, txqueuelen, alias), restored on DEL',
  schema,
  validateConfig(config, req) {
    if (req.env.command === 'ADD' || req.env.command === 'CHECK') settings({ ...req, config });
  },
  add,
  del,
  check,
  async gc() {
    // Backup files carry no network name: another network's could not be told apart. Nothing to collect.
  },
  async status() {},
});
