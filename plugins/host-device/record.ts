/**
 * The attachment record: what the host device looked like before ADD took it (name, MAC, MTU,
 * admin state, alias, host addresses), so DEL and GC can give it back unchanged.
 *
 * It is kept twice: as a JSON file in `dataDir` (complete) and as the device's own `alias`
 * (compact, survives the file being lost and travels with the device through namespaces).
 */
import { sha256Hex } from '../../shared/hash.ts';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import type { Attachment } from '../../shared/cni/types.ts';

export interface SavedAddr {
  /** "192.0.2.1/24", "2001:db8::1/64" */
  cidr: string;
  broadcast?: string;
}

export interface DeviceRecord {
  version: 1;
  containerId: string;
  ifname: string;
  /** CNI_NETNS at ADD time. */
  netns: string;
  /** Attachment key (hash of container ID and ifname), also in the alias. */
  key: string;
  /** The name the device had on the host. */
  hostName: string;
  /** The name it carries while moving between namespaces. */
  tmpName: string;
  mac: string;
  mtu: number;
  up: boolean;
  /** The alias the device had on the host ('' when none). */
  alias: string;
  addrs: SavedAddr[];
  ifindex: number;
  kind?: string;
  /** PCI device bound to a userspace (DPDK) driver: nothing moved, nothing to restore. */
  dpdk?: boolean;
  /** How the device was selected, for telling a later ADD who holds it. */
  pci?: string;
  kernelpath?: string;
}

export const ALIAS_TAG = 'cnits-hd1';
const IFALIASZ = 255;

export function attachmentKey(containerId: string, ifname: string): string {
  return sha256Hex(`${containerId}\0${ifname}`).slice(0, 16);
}

/** A short name unique to the attachment, used while the device is between names. */
export const transitName = (key: string): string => `hd${key.slice(0, 12)}`;

/** The alias ADD sets on the device: `cnits-hd1;k=KEY;n=NAME;m=MAC;u=MTU;s=1;a=CIDR,CIDR`. */
export function encodeAlias(r: Pick<DeviceRecord, 'key' | 'hostName' | 'mac' | 'mtu' | 'up' | 'addrs'>): string {
  let out = `${ALIAS_TAG};k=${r.key};n=${r.hostName};m=${r.mac};u=${r.mtu};s=${r.up ? 1 : 0};a=`;
  let first = true;
  for (const a of r.addrs) {
    const piece = (first ? '' : ',') + a.cidr;
    if (out.length + piece.length > IFALIASZ) break; // the file keeps the complete list
    out += piece;
    first = false;
  }
  return out;
}

export type AliasRecord = Pick<DeviceRecord, 'key' | 'hostName' | 'mac' | 'mtu' | 'up' | 'addrs'>;

export function decodeAlias(alias: string | undefined): AliasRecord | undefined {
  if (!alias || !alias.startsWith(`${ALIAS_TAG};`)) return undefined;
  const kv = new Map<string, string>();
  for (const part of alias.split(';').slice(1)) {
    const eq = part.indexOf('=');
    if (eq > 0) kv.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const key = kv.get('k');
  const hostName = kv.get('n');
  if (!key || !hostName) return undefined;
  const mtu = Number(kv.get('u'));
  return {
    key,
    hostName,
    mac: kv.get('m') ?? '',
    mtu: Number.isInteger(mtu) && mtu > 0 ? mtu : 0,
    up: kv.get('s') === '1',
    addrs: (kv.get('a') ?? '')
      .split(',')
      .filter(Boolean)
      .map((cidr) => ({ cidr })),
  };
}

/** A record rebuilt from the alias alone (the file was lost). */
export function recordFromAlias(a: AliasRecord, containerId: string, ifname: string, netns: string, ifindex: number): DeviceRecord {
  return {
    version: 1,
    containerId,
    ifname,
    netns,
    key: a.key,
    hostName: a.hostName,
    tmpName: transitName(a.key),
    mac: a.mac,
    mtu: a.mtu,
    up: a.up,
    alias: '',
    addrs: a.addrs,
    ifindex,
  };
}

export const isValidAttachment = (r: Pick<DeviceRecord, 'key'>, valid: Attachment[]): boolean =>
  valid.some((v) => attachmentKey(v.containerID, v.ifname) === r.key);

/** Record files: `<dataDir>/<containerId>-<ifname>.json`, written atomically. */
export class RecordStore {
  constructor(readonly dir: string) {}

  file(containerId: string, ifname: string): string {
    return path.join(this.dir, `${containerId}-${ifname}.json`);
  }

  get(containerId: string, ifname: string): DeviceRecord | undefined {
    return this.readFile(this.file(containerId, ifname));
  }

  list(): DeviceRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: DeviceRecord[] = [];
    for (const n of names) {
      if (!n.endsWith('.json')) continue;
      const r = this.readFile(path.join(this.dir, n));
      if (r) out.push(r);
    }
    return out;
  }

  put(r: DeviceRecord): void {
    const f = this.file(r.containerId, r.ifname);
    const tmp = `${f}.${process.pid}.tmp`;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o755 });
      writeFileSync(tmp, JSON.stringify(r, null, 2) + '\n', { mode: 0o644 });
      renameSync(tmp, f);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new CniError(ErrorCode.IOFailure, `failed to write host-device record ${f}`, (e as Error).message);
    }
  }

  remove(r: Pick<DeviceRecord, 'containerId' | 'ifname'>): void {
    rmSync(this.file(r.containerId, r.ifname), { force: true });
  }

  private readFile(f: string): DeviceRecord | undefined {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const r = JSON.parse(text) as DeviceRecord;
      return r && r.version === 1 && typeof r.key === 'string' && typeof r.hostName === 'string' ? r : undefined;
    } catch {
      return undefined;
    }
  }
}
