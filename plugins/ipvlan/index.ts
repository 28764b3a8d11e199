/**
 * ipvlan: an ipvlan sub-interface (l2, l3, l3s; the master's MAC) of a host interface as the
 * container's interface. Drop-in for the Go reference `ipvlan` (IPAM required; the reference's
 * variant taking the addresses from a prevResult without IPAM is not supported).
 */
import schema from '../../conf/schemas/ipvlan.schema.json' with { type: 'json' };
import { sublinkPlugin } from '../sublink/core.ts';
import { ipvlanAddCommand, resolveIpvlan, type IpvlanConf, type IpvlanSettings } from './config.ts';

export default sublinkPlugin<IpvlanConf, IpvlanSettings>({
  name: 'ipvlan',
  kind: 'ipvlan',
  about: 'an ipvlan sub-interface of a host interface in the container (l2, l3, l3s), IPAM',
  schema,
  hasMaster: true,
  ipamRequired: true,
  resolve: resolveIpvlan,
  addCommand: (s, master, tmp, netns) => ipvlanAddCommand(s, master!, tmp, netns),
  drift(l, s) {
    const mode = l.linkinfo?.info_data?.mode;
    return mode === s.mode ? undefined : `ipvlan mode is ${String(mode)}, configured ${s.mode}`;
  },
});
