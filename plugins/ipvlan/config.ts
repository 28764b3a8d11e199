/** ipvlan config: the Go reference's keys (`master`, `mode`, `mtu`, `linkInContainer`, `ipam`, `dns`). Pure. */
import { validIfname } from '../../shared/cni/env.ts';
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import type { SublinkSettings } from '../sublink/core.ts';

export type IpvlanMode = 'l2' | 'l3' | 'l3s';

export interface IpvlanConf extends NetConfBase {
  master?: string;
  mode?: '' | IpvlanMode;
  mtu?: number;
  linkInContainer?: boolean;
}

export interface IpvlanSettings extends SublinkSettings {
  mode: IpvlanMode;
}

export function resolveIpvlan(c: IpvlanConf): IpvlanSettings {
  if (c.master && !validIfname(c.master)) throw invalidConfig('master', `${JSON.stringify(c.master)} is not an interface name`);
  return {
    master: c.master || undefined,
    mode: c.mode || 'l2',
    mtu: c.mtu || undefined,
    linkInContainer: c.linkInContainer === true,
    layer3: Boolean(c.ipam?.type),
  };
}

export function ipvlanAddCommand(s: IpvlanSettings, master: string, name: string, netns: string): string[] {
  const cmd = ['link', 'add', 'link', master, 'name', name];
  if (s.mtu) cmd.push('mtu', String(s.mtu));
  cmd.push('netns', netns, 'type', 'ipvlan', 'mode', s.mode);
  return cmd;
}
