/**
 * tap config: the Go reference's keys (`multiQueue`, `mtu`, `mac`, `owner`, `group`,
 * `selinuxContext`, `bridge`, `ipam`, `dns`) and MAC overrides (CNI_ARGS `MAC`, then
 * `runtimeConfig.mac`, as the reference). Pure functions.
 */
import { validIfname, type CniEnv } from '../../shared/cni/env.ts';
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import type { SublinkSettings } from '../sublink/core.ts';

export interface TapConf extends NetConfBase {
  multiQueue?: boolean;
  mtu?: number;
  mac?: string;
  owner?: number;
  group?: number;
  selinuxContext?: string;
  bridge?: string;
}

export interface TapSettings extends SublinkSettings {
  multiQueue: boolean;
  mac?: string;
  owner?: number;
  group?: number;
  bridge?: string;
  selinuxContext?: string;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function checkMac(mac: unknown, field: string): string | undefined {
  if (mac === undefined || mac === '') return undefined;
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) throw invalidConfig(field, `invalid args ${JSON.stringify(mac)} for MAC addr`);
  if (parseInt(mac.slice(0, 2), 16) & 1) throw invalidConfig(field, `${mac} is a multicast MAC address`);
  return mac.toLowerCase();
}

export function resolveTap(c: TapConf, env: Pick<CniEnv, 'args'>): TapSettings {
  if (c.bridge && !validIfname(c.bridge)) throw invalidConfig('bridge', `${JSON.stringify(c.bridge)} is not an interface name`);
  return {
    multiQueue: c.multiQueue === true,
    mtu: c.mtu || undefined,
    mac: checkMac(c.runtimeConfig?.mac, 'runtimeConfig.mac') ?? checkMac(env.args.get('MAC'), 'CNI_ARGS MAC') ?? checkMac(c.mac, 'mac'),
    owner: c.owner,
    group: c.group,
    bridge: c.bridge || undefined,
    selinuxContext: c.selinuxContext || undefined,
    linkInContainer: false,
    layer3: Boolean(c.ipam?.type),
  };
}

/**
 * `ip tuntap add` argv (run inside the container netns) creating the tap `name`. With both
 * `owner` and `group` the reference creates the device through netlink with IFF_VNET_HDR (and,
 * single-queue, without IFF_NO_PI); otherwise through `ip tuntap` as here: the same flags.
 */
export function tapAddCommand(s: TapSettings, name: string): string[] {
  const cmd = ['tuntap', 'add', 'mode', 'tap', 'name', name];
  if (s.owner !== undefined && s.group !== undefined && !s.selinuxContext) {
    cmd.push('vnet_hdr');
    if (!s.multiQueue) cmd.push('pi');
  }
  if (s.multiQueue) cmd.push('multi_queue');
  if (s.owner !== undefined) cmd.push('user', String(s.owner));
  if (s.group !== undefined) cmd.push('group', String(s.group));
  return cmd;
}

/** `ip` lines after creation: MTU and MAC (as the reference's `ip link set`), then the bridge port. */
export function tapThenCommands(s: TapSettings, name: string): string[][] {
  const out: string[][] = [];
  const set = ['link', 'set', 'dev', name];
  if (s.mtu) set.push('mtu', String(s.mtu));
  if (s.mac) set.push('address', s.mac);
  if (set.length > 4) out.push(set);
  if (s.bridge) out.push(['link', 'set', 'dev', name, 'master', s.bridge]);
  return out;
}

/** What differs between a tap link (`ip -d` JSON) and the settings, for CHECK. */
export function tapDrift(l: { master?: string; linkinfo?: { info_data?: Record<string, unknown> } }, s: TapSettings): string | undefined {
  const d = l.linkinfo?.info_data ?? {};
  if (d.type !== undefined && d.type !== 'tap') return `it is a ${String(d.type)} device, not a tap`;
  if (d.multi_queue !== undefined && Boolean(d.multi_queue) !== s.multiQueue)
    return `multi_queue is ${String(d.multi_queue)}, configured ${String(s.multiQueue)}`;
  if (s.bridge && l.master !== s.bridge) return `is not a port of bridge ${s.bridge}`;
  return undefined;
}
