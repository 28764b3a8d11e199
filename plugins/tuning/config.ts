/**
 * tuning config: the Go reference's keys (`sysctl`, `mac`, `mtu`, `promisc`, `allmulti`,
 * `txQLen`, `alias`, `dataDir`), its overrides (CNI_ARGS `MAC`, `runtimeConfig.mac`,
 * `args.cni.{sysctl,mac,promisc,mtu,allmulti,txQLen,alias}`, later ones winning), its backup
 * file (`<dataDir>/<containerID>_<ifname>.json`, same field names, so either plugin's DEL
 * restores what the other saved), and its sysctl allowlist (/etc/cni/tuning/allowlist.conf).
 * Pure functions only.
 */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { CniEnv } from '../../shared/cni/env.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import type { LinkInfo } from '../../shared/kernel/ip.ts';

export interface TuningArgs {
  sysctl?: Record<string, string>;
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
  txQLen?: number;
  alias?: string;
}

export interface TuningConf extends NetConfBase {
  sysctl?: Record<string, string>;
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  allmulti?: boolean;
  txQLen?: number;
  alias?: string;
  dataDir?: string;
}

/** The settings of one request, overrides applied; sysctl keys resolved to /proc/sys paths. */
export interface TuningSettings {
  /** [key as configured, path under /proc/sys ("net/ipv4/conf/eth0/rp_filter"), value] */
  sysctls: Array<[string, string, string]>;
  mac?: string;
  mtu?: number;
  promisc: boolean;
  allmulti?: boolean;
  txQLen?: number;
  alias?: string;
  dataDir: string;
}

/** What DEL puts back (the reference's configToRestore: only what ADD changed). */
export interface Backup {
  mac?: string;
  promisc?: boolean;
  mtu?: number;
  allmulti?: boolean;
  txQLen?: number;
  alias?: string;
}

export const DEFAULT_DATA_DIR = '/run/cni/tuning';
export const ALLOWLIST_FILE = '/etc/cni/tuning/allowlist.conf';
const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function checkMac(mac: unknown, field: string): string | undefined {
  if (mac === undefined || mac === '') return undefined;
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) throw invalidConfig(field, `${JSON.stringify(mac)} is not a MAC address`);
  return mac.toLowerCase();
}

/**
 * The /proc/sys path of a sysctl key: dots are separators unless the key already uses
 * slashes (`net/ipv4/conf/eth0.100/rp_filter`); the first `IFNAME` becomes CNI_IFNAME.
 * Refused with code 7, naming the key: anything outside `net/`, empty, `.` or `..`
 * segments, and characters `sysctl -w` cannot carry (`=`, white space, control characters).
 */
export function sysctlPath(key: string, ifname: string): string {
  const subst = key.replace('IFNAME', ifname);
  // eslint-disable-next-line no-control-regex
  if (/[=\s\x00-\x1f\x7f]/.test(subst)) throw invalidConfig(`sysctl["${key}"]`, 'contains "=", white space or a control character');
  const parts = subst.includes('/') ? subst.split('/') : subst.split('.');
  if (parts.some((p) => p === '' || p === '.' || p === '..'))
    throw invalidConfig(`sysctl["${key}"]`, 'is not a plain sysctl name (empty, "." or ".." component)');
  if (parts[0] !== 'net' || parts.length < 2)
    throw invalidConfig(`sysctl["${key}"]`, "is outside the container network namespace's net.* sysctls");
  return parts.join('/');
}

/** The allowlist's regular expressions (one a line, blank lines ignored); undefined when there is no file. */
export function parseAllowlist(text: string | undefined): RegExp[] | undefined {
  if (text === undefined) return undefined;
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      try {
        return new RegExp(l);
      } catch {
        throw invalidConfig('sysctl allowlist', `${JSON.stringify(l)} in ${ALLOWLIST_FILE} is not a regular expression`);
      }
    });
}

/** As the reference: each configured key must match one allowlist pattern (unanchored) when the file exists. */
export function checkAllowlist(keys: string[], allow: RegExp[] | undefined): void {
  if (!allow) return;
  for (const k of keys) if (!allow.some((re) => re.test(k))) throw invalidConfig(`sysctl["${k}"]`, `is not allowed by ${ALLOWLIST_FILE}`);
}

export function resolveTuning(c: TuningConf, env: Pick<CniEnv, 'args' | 'ifname'>): TuningSettings {
  const a = (c.args?.cni ?? {}) as TuningArgs;
  const sysctl = { ...(c.sysctl ?? {}), ...(a.sysctl ?? {}) };
  const mac =
    checkMac(a.mac, 'args.cni.mac') ??
    checkMac(c.runtimeConfig?.mac, 'runtimeConfig.mac') ??
    checkMac(env.args.get('MAC'), 'CNI_ARGS MAC') ??
    checkMac(c.mac, 'mac');
  const mtu = a.mtu ?? c.mtu;
  const txQLen = a.txQLen ?? c.txQLen;
  const alias = a.alias ?? c.alias;
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 0)) throw invalidConfig('args.cni.mtu', 'is not a non-negative integer');
  if (txQLen !== undefined && (!Number.isInteger(txQLen) || txQLen < 0))
    throw invalidConfig('args.cni.txQLen', 'is not a non-negative integer');
  if (alias !== undefined && (typeof alias !== 'string' || alias.length > 255))
    throw invalidConfig('alias', 'is not a string of at most 255 characters');
  return {
    sysctls: Object.entries(sysctl).map(([k, v]) => [k, sysctlPath(k, env.ifname), String(v)]),
    mac,
    mtu: mtu || undefined,
    promisc: (a.promisc ?? c.promisc) === true,
    allmulti: a.allmulti ?? c.allmulti,
    txQLen,
    alias,
    dataDir: c.dataDir || DEFAULT_DATA_DIR,
  };
}

/** Whether ADD changes a link attribute (then it saves a backup first, as the reference). */
export const changesLink = (s: TuningSettings): boolean =>
  s.mac !== undefined || s.mtu !== undefined || s.promisc || s.allmulti !== undefined || s.txQLen !== undefined || s.alias !== undefined;

const flag = (l: LinkInfo, f: string): boolean => l.flags.includes(f);

/** The backup of what `s` will change, from the link as it is now. */
export function backupOf(s: TuningSettings, l: LinkInfo): Backup {
  const b: Backup = {};
  if (s.mac !== undefined && l.address) b.mac = l.address;
  if (s.promisc) b.promisc = flag(l, 'PROMISC');
  if (s.mtu !== undefined) b.mtu = l.mtu;
  if (s.allmulti !== undefined) b.allmulti = flag(l, 'ALLMULTI');
  if (s.txQLen !== undefined && typeof l.txqlen === 'number') b.txQLen = l.txqlen;
  if (s.alias !== undefined) b.alias = typeof l.ifalias === 'string' ? l.ifalias : '';
  return b;
}

/** `ip -batch` lines setting the link attributes (the alias goes apart: it may hold spaces). */
export function linkCommands(ifname: string, w: Backup): string[][] {
  const cmds: string[][] = [];
  if (w.mtu) cmds.push(['link', 'set', 'dev', ifname, 'mtu', String(w.mtu)]);
  if (w.mac) cmds.push(['link', 'set', 'dev', ifname, 'address', w.mac]);
  if (w.promisc !== undefined) cmds.push(['link', 'set', 'dev', ifname, 'promisc', w.promisc ? 'on' : 'off']);
  if (w.allmulti !== undefined) cmds.push(['link', 'set', 'dev', ifname, 'allmulticast', w.allmulti ? 'on' : 'off']);
  if (w.txQLen !== undefined) cmds.push(['link', 'set', 'dev', ifname, 'txqueuelen', String(w.txQLen)]);
  return cmds;
}

/** The wanted attributes of `s` in backup shape (promisc only when asked for: the reference never turns it off on ADD). */
export function wanted(s: TuningSettings): Backup {
  const w: Backup = {};
  if (s.mac !== undefined) w.mac = s.mac;
  if (s.promisc) w.promisc = true;
  if (s.mtu !== undefined) w.mtu = s.mtu;
  if (s.allmulti !== undefined) w.allmulti = s.allmulti;
  if (s.txQLen !== undefined) w.txQLen = s.txQLen;
  if (s.alias !== undefined) w.alias = s.alias;
  return w;
}

/** The first difference between the link and what CHECK expects (the reference also fails on an unrequested promisc), or undefined. */
export function linkDrift(s: TuningSettings, l: LinkInfo): string | undefined {
  if (s.mac !== undefined && (l.address ?? '').toLowerCase() !== s.mac) return `MAC of ${l.ifname} is ${l.address}, configured ${s.mac}`;
  if (s.promisc !== flag(l, 'PROMISC'))
    return `promiscuous mode of ${l.ifname} is ${flag(l, 'PROMISC') ? 'on' : 'off'}, configured ${s.promisc ? 'on' : 'off'}`;
  if (s.mtu !== undefined && l.mtu !== s.mtu) return `MTU of ${l.ifname} is ${l.mtu}, configured ${s.mtu}`;
  if (s.allmulti !== undefined && flag(l, 'ALLMULTI') !== s.allmulti)
    return `all-multicast mode of ${l.ifname} is ${flag(l, 'ALLMULTI') ? 'on' : 'off'}, configured ${s.allmulti ? 'on' : 'off'}`;
  if (s.txQLen !== undefined && l.txqlen !== s.txQLen) return `txqueuelen of ${l.ifname} is ${String(l.txqlen)}, configured ${s.txQLen}`;
  const alias = typeof l.ifalias === 'string' ? l.ifalias : '';
  if (s.alias !== undefined && alias !== s.alias)
    return `alias of ${l.ifname} is ${JSON.stringify(alias)}, configured ${JSON.stringify(s.alias)}`;
  return undefined;
}

/** The backup file name of an attachment (the reference's). Refuses a "/" in either part. */
export function backupName(containerId: string, ifname: string): string {
  if (containerId.includes('/') || ifname.includes('/')) throw invalidConfig('CNI_CONTAINERID/CNI_IFNAME', 'contains "/"');
  return `${containerId}_${ifname}.json`;
}
