import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Kernel tools that only shared/kernel/ may start (the kernel-doors rule below). */
const SPAWNERS = '/^(run|spawn|spawnSync|spawnCollect|execFile|execFileSync|execSync|exec|execa|execaSync|\\$)$/';
const KERNEL_TOOLS = '/^(ip|nft|bridge|tc|sysctl|conntrack|ip6?tables(-save|-restore)?|ebtables|modprobe|ethtool|nsenter|unshare)$/';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'build/', 'bench/out/', '.stryker-tmp/', 'reports/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        Buffer: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        NodeJS: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    // Kernel doors only: outside shared/kernel/ no code starts a kernel tool (by any spawner:
    // run, spawn, execa, ...); call a shared/kernel function (docs/DEVELOPING.md, "Layers").
    files: ['*.ts', 'shared/**/*.ts', 'plugins/**/*.ts', 'ipam/**/*.ts', 'agent/**/*.ts', 'tools/**/*.ts'],
    ignores: ['shared/kernel/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: `CallExpression[callee.name=${SPAWNERS}][arguments.0.value=${KERNEL_TOOLS}]`,
          message:
            'Only shared/kernel/ starts kernel tools (ip, nft, bridge, tc, sysctl, conntrack, iptables, ...): call a shared/kernel function.',
        },
        {
          selector: `CallExpression[callee.property.name=${SPAWNERS}][arguments.0.value=${KERNEL_TOOLS}]`,
          message:
            'Only shared/kernel/ starts kernel tools (ip, nft, bridge, tc, sysctl, conntrack, iptables, ...): call a shared/kernel function.',
        },
        {
          selector: `ArrayExpression[elements.0.value=/^nsenter$|^unshare$/]`,
          message: 'Only shared/kernel/ starts kernel tools (nsenter/unshare included): call a shared/kernel function.',
        },
      ],
    },
  },
  {
    // One firewall owner model: only shared/firewall/ writes nft and iptables transactions (its
    // doors nft.ts and iptables.ts); owners build rule text and hand it over. Every owner is
    // declared in shared/firewall/owners.ts; one that writes on its own (door: 'own') would have
    // to be listed here too, and test/firewall-owners.test.ts checks the same from that list.
    files: ['*.ts', 'shared/**/*.ts', 'plugins/**/*.ts', 'ipam/**/*.ts', 'agent/**/*.ts', 'tools/**/*.ts'],
    ignores: [
      // the doors
      'shared/kernel/**',
      'shared/firewall/**',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)kernel/nft(\\.ts)?$',
              importNames: ['nftApply', 'nftTry', 'nftRun', 'nftBatch'],
              message:
                'Firewall owners write through shared/firewall/nft.ts (transaction, tryTransaction, converge), not shared/kernel/nft.ts.',
            },
            {
              regex: '(^|/)kernel/iptables(\\.ts)?$',
              importNames: ['iptablesRestore', 'withIptablesLock'],
              message:
                'Firewall owners write through shared/firewall/iptables.ts (restoreTransaction, withFirewallLock), not shared/kernel/iptables.ts.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
