/**
 * tap: a tap device (tun driver) as the container's interface, optionally a port of a bridge
 * inside the container, IPAM optional (L2 only without). Drop-in for the Go reference `tap`:
 * same keys, same result ([container interface] with its MAC, addresses on interface 0, DNS
 * from the config). `selinuxContext` is accepted; labelling the device needs SELinux, which
 * this build does not drive (the key is accepted and ignored).
 */
import schema from '../../conf/schemas/tap.schema.json' with { type: 'json' };
import { sublinkPlugin } from '../sublink/core.ts';
import { resolveTap, tapAddCommand, tapDrift, tapThenCommands, type TapConf, type TapSettings } from './config.ts';

export default sublinkPlugin<TapConf, TapSettings>({
  name: 'tap',
  kind: 'tun',
  about: 'a tap device in the container (multi-queue, owner, group, MAC, MTU, bridge port), IPAM optional',
  schema,
  hasMaster: false,
  ipamRequired: false,
  resolve: resolveTap,
  addCommand: (s, _master, tmp) => tapAddCommand(s, tmp),
  then: (s, tmp) => tapThenCommands(s, tmp),
  drift: (l, s) => tapDrift(l, s),
});
