/** dummy: a dummy interface in the container with the IPAM addresses. Drop-in for the Go reference `dummy`. */
import schema from '../../conf/schemas/dummy.schema.json' with { type: 'json' };
import type { NetConfBase } from '../../shared/cni/types.ts';
import { sublinkPlugin, type SublinkSettings } from '../sublink/core.ts';

export const dummyAddCommand = (name: string, netns: string): string[] => ['link', 'add', 'name', name, 'netns', netns, 'type', 'dummy'];

export default sublinkPlugin<NetConfBase, SublinkSettings>({
  name: 'dummy',
  kind: 'dummy',
  about: 'a dummy interface in the container, addressed by IPAM',
  schema,
  hasMaster: false,
  ipamRequired: true,
  resolve: (c) => ({ linkInContainer: false, layer3: Boolean(c.ipam?.type) }),
  addCommand: (_s, _master, tmp, netns) => dummyAddCommand(tmp, netns),
  drift: () => undefined,
});
