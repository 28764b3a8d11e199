/**
 * cnictl's verbs: one file per verb, loaded only when used. A verb module exports
 * `run(ctx, args): Promise<number>` and `usage` (its help text). Add a verb with one line here.
 */
import type { Ctx } from './common.ts';

export interface VerbModule {
  run(ctx: Ctx, args: string[]): Promise<number>;
  usage: string;
}

export const VERBS: Record<string, { summary: string; load: () => Promise<VerbModule> }> = {
  apply: { summary: 'create or replace the objects of a manifest (-f FILE|-)', load: () => import('./apply.ts') },
  delete: { summary: 'delete the objects a manifest names, or KIND NAME', load: () => import('./delete.ts') },
  get: { summary: 'list objects: endpoints, policies, namespaces, services, ... (-o wide|json|yaml)', load: () => import('./get.ts') },
  describe: { summary: 'one object in detail, with the policies/endpoints it relates to', load: () => import('./describe.ts') },
  label: { summary: 'set (k=v) or remove (k-) labels of an endpoint, a namespace, ...', load: () => import('./label.ts') },
  dns: { summary: "dns lookup NAME [TYPE]: what the agent's DNS server answers (get dns: every record)", load: () => import('./dns.ts') },
  diag: {
    summary: 'diag connectivity|service|endpoint: why a pod cannot reach something, with a diagnosis',
    load: () => import('./diag/index.ts'),
  },
  top: {
    summary: 'live traffic of every endpoint on this node: rates, errors, drops, connections, utilization, latency (-n NS, --watch)',
    load: () => import('./top.ts'),
  },
  alerts: {
    summary: "the node agent's alerts: pending, firing, recently resolved (-n NS, --state, -o wide|json|yaml)",
    load: () => import('./alerts.ts'),
  },
  policy: { summary: 'policy trace --from NS/POD --to NS/POD|IP --port 80/tcp', load: () => import('./trace.ts') },
};
