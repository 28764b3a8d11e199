/**
 * macvlan config: the Go reference's keys (`master`, `mode`, `mtu`, `mac`, `linkInContainer`,
 * `ipam`, `dns`) and MAC overrides (CNI_ARGS `MAC`, then `runtimeConfig.mac`). Pure functions.
 */
import { validIfname } from '../../shared/cni/env.ts';
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { CniEnv } from '../../shared/cni/env.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import type { SublinkSettings } from '../sublink/core.ts';

export type MacvlanMode = 'bridge' | 'private' | 'vepa' | 'passthru';

export interface MacvlanConf extends NetConfBase {
  master?: string;
  mode?: '' | MacvlanMode;
  mtu?: number;
  mac?: string;
  linkInContainer?: boolean;
}

export interface MacvlanSettings extends SublinkSettings {
  mode: MacvlanMode;
  mac?: string;
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function checkMac(mac: unknown, field: string): string | undefined {
  if (mac === undefined || mac === '') return undefined;
  if (typeof mac !== 'string' || !MAC_RE.test(mac)) throw invalidConfig(field, `${JSON.stringify(mac)} is not a MAC address`);
  if (parseInt(mac.slice(0, 2), 16) & 1) throw invalidConfig(field, `${mac} is a multicast MAC address`);
  return mac.toLowerCase();
}

export function resolveMacvlan(c: MacvlanConf, env: Pick<CniEnv, 'args'>): MacvlanSettings {
  if (c.master && !validIfname(c.master)) throw invalidConfig('master', `${JSON.stringify(c.master)} is not an interface name`);
  return {
    master: c.master || undefined,
    mode: c.mode || 'bridge',
    mtu: c.mtu || undefined,
    mac: checkMac(c.runtimeConfig?.mac, 'runtimeConfig.mac') ?? checkMac(env.args.get('MAC'), 'CNI_ARGS MAC') ?? checkMac(c.mac, 'mac'),
    linkInContainer: c.linkInContainer === true,
    layer3: Boolean(c.ipam?.type),
  };
}

/** `ip link add` argv creating the macvlan `name` on `master`, directly inside `netns`. */
export function macvlanAddCommand(s: MacvlanSettings, master: string, name: string, netns: string): string[] {
  const cmd = ['link', 'add', 'link', master, 'name', name];
  if (s.mtu) cmd.push('mtu', String(s.mtu));
  if (s.mac) cmd.push('address', s.mac);
  cmd.push('netns', netns, 'type', 'macvlan', 'mode', s.mode);
  return cmd;
}
