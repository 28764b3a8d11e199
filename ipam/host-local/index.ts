import { definePlugin } from '../../shared/cni/plugin.ts';
export default definePlugin({
  name: 'host-local',
  about: 'host-local IPAM (placeholder)',
  async add() { return {}; },
  async del() {},
  async check() {},
});
