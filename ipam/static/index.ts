import { definePlugin } from '../../shared/cni/plugin.ts';
export default definePlugin({
  name: 'static',
  about: 'static IPAM (placeholder)',
  async add() { return {}; },
  async del() {},
  async check() {},
});
