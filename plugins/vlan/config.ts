/** vlan config: the Go reference's keys (`master`, `vlanId`, `mtu`, `linkInContainer`, `ipam`, `dns`). Pure. */
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import type { SublinkSettings } from '../sublink/core.ts';

export interface VlanConf extends NetConfBase {
  master?: string;
  vlanId?: number;
  mtu?: number;
  linkInContainer?: boolean;
}

export interface VlanSettings extends SublinkSettings {
  master: string;
  vlanId: number;
}

export function resolveVlan(c: VlanConf): VlanSettings {
  if (!c.master) throw invalidConfig('master', 'is required: the host interface to put the VLAN on');
  if (c.vlanId === undefined || !Number.isInteger(c.vlanId) || c.vlanId < 0 || c.vlanId > 4094)
    throw invalidConfig('vlanId', 'must be an integer from 0 to 4094');
  return {
    master: c.master,
    vlanId: c.vlanId,
    mtu: c.mtu || undefined,
    linkInContainer: c.linkInContainer === true,
    layer3: Boolean(c.ipam?.type),
  };
}

export function vlanAddCommand(s: VlanSettings, name: string, netns: string): string[] {
  const cmd = ['link', 'add', 'link', s.master, 'name', name];
  if (s.mtu) cmd.push('mtu', String(s.mtu));
  cmd.push('netns', netns, 'type', 'vlan', 'id', String(s.vlanId));
  return cmd;
}
