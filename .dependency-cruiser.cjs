// The layer rules of docs/DEVELOPING.md ("Layers"), checked by `make lint` (dependency-cruiser
// over main.ts, names.ts and the source folders). The rule against spawning kernel tools outside
// shared/kernel/ is in eslint.config.js (it is about calls, not imports).
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      severity: 'error',
      comment: 'Imports point one way: a cycle means two modules are one, or a piece belongs lower down.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'shared-imports-no-role',
      severity: 'error',
      comment: 'shared/ is the library every role uses: it imports no role folder (plugins, ipam, agent, tools) nor the entry.',
      from: { path: '^shared/' },
      to: { path: '^(plugins|ipam|agent|tools)/|^(main|names)\\.ts$' },
    },
    {
      name: 'plugins-work-without-agent',
      severity: 'error',
      comment: 'A plugin works with the agent down: plugins/ and ipam/ never import agent/ or tools/.',
      from: { path: '^(plugins|ipam)/' },
      to: { path: '^(agent|tools)/' },
    },
    {
      name: 'agent-imports-no-plugin',
      severity: 'error',
      comment: 'The agent runs reconcilers over shared/ code; what it shares with a plugin lives in shared/ (e.g. shared/overlay/).',
      from: { path: '^agent/' },
      to: { path: '^(plugins|ipam|tools)/' },
    },
    {
      name: 'tools-talk-to-agent-over-socket',
      severity: 'error',
      comment: 'tools/ reach the agent only through its socket API (message types in shared/agentapi.ts), and run plugins by exec.',
      from: { path: '^tools/' },
      to: { path: '^(agent|plugins|ipam)/' },
    },
    {
      name: 'roles-do-not-import-the-entry',
      severity: 'error',
      comment: 'main.ts and names.ts are the top floor: nothing under them imports them.',
      from: { path: '^(shared|plugins|ipam|agent|tools)/' },
      to: { path: '^(main|names)\\.ts$' },
    },
    {
      name: 'kernel-doors-only',
      severity: 'error',
      comment: 'Only shared/kernel/ starts kernel tools: use (or add) a shared/kernel function instead of run().',
      from: { path: '^(shared|plugins|ipam|agent|tools)/', pathNot: '^shared/kernel/' },
      to: { path: '^shared/kernel/exec\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^(main\\.ts|names\\.ts|shared/|plugins/|ipam/|agent/|tools/)',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
