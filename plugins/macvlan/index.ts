/**
 * macvlan: a macvlan sub-interface of a host interface (`master`) as the container's
 * interface, IPAM optional (L2 only without). Drop-in for the Go reference `macvlan`: same
 * keys, same result ([container interface], addresses on interface 0, DNS from the config).
 */
import schema from '../../conf/schemas/macvlan.schema.json' with { type: 'json' };
import { sublinkPlugin } from '../sublink/core.ts';
import { macvlanAddCommand, resolveMacvlan, type MacvlanConf, type MacvlanSettings } from './config.ts';

export default sublinkPlugin<MacvlanConf, MacvlanSettings>({
  name: 'macvlan',
  kind: 'macvlan',
  about: 'a macvlan sub-interface of a host interface in the container (bridge, private, vepa, passthru), IPAM optional',
  schema,
  hasMaster: true,
  ipamRequired: false,
  resolve: resolveMacvlan,
  addCommand: (s, master, tmp, netns) => macvlanAddCommand(s, master!, tmp, netns),
  drift(l, s) {
    const mode = l.linkinfo?.info_data?.mode;
    return mode === s.mode ? undefined : `macvlan mode is ${String(mode)}, configured ${s.mode}`;
  },
});
