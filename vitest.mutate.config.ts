/**
 * The tests StrykerJS runs against each mutant (`make mutate`): the unit tests of the pure
 * modules only (no executables, no namespaces), so a mutant is judged in milliseconds.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/engine.test.ts', 'test/bridge-unit.test.ts', 'test/host-local-unit.test.ts', 'test/pure-modules.test.ts'],
    testTimeout: 30_000,
    pool: 'threads',
    maxWorkers: 1,
    reporters: ['default'],
  },
});
