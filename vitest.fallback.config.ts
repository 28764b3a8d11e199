/**
 * The process fallback of the in-process kernel doors (docs/netlink.md): a representative set
 * of kernel test files again, with CNI_TS_NETLINK=0 handed to every plugin the tests run, so
 * the shipped (Bun) executables take the ip / nsenter / sysctl / flock processes. `make test`
 * runs it after the main suite (`make test-fallback` alone).
 */
import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

// spread, not mergeConfig: that would append to the base's `include` (every test file)
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'test/bridge.test.ts',
      'test/host-local.test.ts',
      'test/ptp.test.ts',
      'test/portmap.test.ts',
      'test/loopback.test.ts',
      // tc, ip rule, sysctl reads, macvlan/ifb link add: in-process since issue 12 session 4
      'test/bandwidth.test.ts',
      'test/sbr.test.ts',
      'test/tuning.test.ts',
      'test/macvlan.test.ts',
      // CHECK reads, tuning's alias, tc class dumps (issue 12 session 5): compares the paths itself
      'test/nl-rest-kernel.test.ts',
    ],
    env: { CNI_TS_NETLINK: '0' },
  },
});
