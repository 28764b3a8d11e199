// StrykerJS over the pure modules (`make mutate`, not part of `make test`): the protocol
// engine's pure pieces, IPAM ranges and config, IP math, the bridge plan and config. The unit
// tests in vitest.mutate.config.ts judge every mutant; the TypeScript checker drops mutants
// that do not type-check. Score and survivors: docs/benchmarks.md ("Mutation testing").
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts' },
  checkers: ['typescript'],
  // the mutated modules and what they import (not the whole project): a faster check per mutant
  tsconfigFile: 'tsconfig.mutate.json',
  typescriptChecker: { prioritizePerformanceOverAccuracy: true },
  mutate: [
    'shared/cni/result.ts',
    'shared/cni/version.ts',
    'shared/cni/validate.ts',
    'shared/cni/env.ts',
    'shared/cni/keys.ts',
    'shared/cni/formats.ts',
    'shared/ipnet.ts',
    'ipam/host-local/range.ts',
    'ipam/host-local/config.ts',
    'plugins/bridge/plan.ts',
    'plugins/bridge/config.ts',
  ],
  coverageAnalysis: 'perTest',
  // STRYKER_IGNORE_STATIC=1: skip mutants of module-level code (a fast first pass)
  ignoreStatic: process.env.STRYKER_IGNORE_STATIC === '1',
  // 2 cores shared with other work: one or two test processes at most
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 2),
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  thresholds: { high: 90, low: 80, break: 80 },
  tempDirName: '.stryker-tmp',
  ignorePatterns: ['dist', 'build', 'bench', 'reports', '.stryker-tmp', 'docs', '*.log'],
  cleanTempDir: 'always',
};
