/** vlan: an 802.1q sub-interface of a host interface as the container's interface. Drop-in for the Go reference `vlan`. */
import schema from '../../conf/schemas/vlan.schema.json' with { type: 'json' };
import { sublinkPlugin } from '../sublink/core.ts';
import { resolveVlan, vlanAddCommand, type VlanConf, type VlanSettings } from './config.ts';

export default sublinkPlugin<VlanConf, VlanSettings>({
  name: 'vlan',
  kind: 'vlan',
  about: 'an 802.1q VLAN sub-interface of a host interface in the container, IPAM',
  schema,
  hasMaster: true,
  ipamRequired: true,
  resolve: resolveVlan,
  addCommand: (s, _master, tmp, netns) => vlanAddCommand(s, tmp, netns),
  drift(l, s) {
    const id = l.linkinfo?.info_data?.id;
    return id === s.vlanId ? undefined : `VLAN id is ${String(id)}, configured ${s.vlanId}`;
  },
});
