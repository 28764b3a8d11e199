/**
 * `cni-ts agent [--config FILE]`: the node agent, one per host (conf/systemd/cni-ts-agent.service).
 * Reads the host's agent config (default /etc/cni-ts/agent.json, or $CNI_TS_CONFIG), runs its
 * reconcilers (policy; services; DNS unless `dns.enabled` is false; overlay peers when `overlay.config` names the overlay's conflist), serves HTTP on `listen` and JSON on the unix socket `socket`.
 * Stops on SIGTERM / SIGINT; SIGHUP runs every reconciler now.
 */
import { rmSync } from 'node:fs';
import type http from 'node:http';
import type net from 'node:net';
import { configPathFrom, loadAgentConfig, type AgentConfig } from '../shared/agentconfig.ts';
import type { AgentStatus, ReconcilerStatus } from '../shared/agentapi.ts';
import { Logger } from '../shared/cni/log.ts';
import { startHttp, startSocket, type ApiHandlers } from './api.ts';
import type { Loop } from './loop.ts';
import { PolicyReconciler } from './reconcilers/policy.ts';
import { OverlayReconciler, overlaySettings } from './reconcilers/overlay.ts';
import { DnsReconciler, dnsConfigOf } from './reconcilers/dns.ts';
import type { Settings as OverlaySettings } from '../shared/overlay/config.ts';
import { ServicesReconciler } from './reconcilers/services.ts';
import { DockerPlugin, dockerEnabled } from './docker/index.ts';
import { MetricsSampler } from './metrics/sampler.ts';
import { createRegistry, metricsRoute, type Registry } from './metrics/registry.ts';
import { metricsSettings } from './metrics/config.ts';
import { History } from './dashboard/history.ts';
import { dashboardRoutes } from './dashboard/routes.ts';
import { policySettings } from '../shared/policysync.ts';
import { PluginCalls } from './metrics/plugin-calls.ts';
import { poolSizes, registerIpamFamilies } from './metrics/ipam.ts';
import { registerDnsFamilies, registerServiceFamilies } from './metrics/services-dns.ts';
import { registerPolicyFamilies } from './metrics/policy.ts';
import { AlertEngine } from './alerts/index.ts';

const USAGE = `usage: cni-ts agent [--config FILE] [--resync SECONDS] [--no-http] [--no-socket]
  --config FILE     the host's agent config (default $CNI_TS_CONFIG or /etc/cni-ts/agent.json)
  --resync SECONDS  periodic full resync of every reconciler (default: policy.resyncSeconds or 10)
  --no-http         do not serve HTTP on "listen"
  --no-socket       do not serve the unix socket "socket"
`;

interface Args {
  config: string;
  resync?: number;
  http: boolean;
  socket: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const a: Args = { config: configPathFrom(argv), http: true, socket: true };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--config') i++;
    else if (x.startsWith('--config=')) continue;
    else if (x === '--resync') {
      const v = Number(argv[++i]);
      if (!(v > 0)) return '--resync needs a number of seconds';
      a.resync = v;
    } else if (x === '--no-http') a.http = false;
    else if (x === '--no-socket') a.socket = false;
    else if (x === '-h' || x === '--help') return '';
    else return `unknown argument "${x}"`;
  }
  return a;
}

const mib = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;

export class Agent {
  readonly startedAt = new Date().toISOString();
  readonly loops: Loop[] = [];
  private policy: PolicyReconciler;
  private overlay: OverlayReconciler | undefined;
  /** the DNS server (absent when `dns.enabled` is false) */
  readonly dns: DnsReconciler | undefined;
  private services: ServicesReconciler;
  /** Docker's CNM plugin socket (a `docker` section in the config; docs/docker.md) */
  readonly docker: DockerPlugin | undefined;
  /** the agent's Prometheus registry (GET /metrics) */
  readonly registry: Registry = createRegistry();
  /** per-endpoint traffic metrics (absent when `metrics.enabled` is false) */
  readonly metrics: MetricsSampler | undefined;
  private pluginCalls: PluginCalls | undefined;
  /** alert rules over the sampler's figures (absent when `alerts.enabled` is false) */
  readonly alerts: AlertEngine | undefined;
  private servers: Array<http.Server | net.Server> = [];
  /** the dashboard's last 15 minutes of endpoint figures (agent/dashboard) */
  readonly history = new History();

  constructor(
    readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly opts: { resyncMs: number; http: boolean; socket: boolean; overlay?: OverlaySettings },
  ) {
    this.policy = new PolicyReconciler(cfg, log, { resyncMs: opts.resyncMs });
    this.loops.push(this.policy.loop);
    this.services = new ServicesReconciler(cfg, log, { resyncMs: opts.resyncMs });
    this.loops.push(this.services.loop);
    if (opts.overlay) {
      this.overlay = new OverlayReconciler(opts.overlay, log);
      this.loops.push(this.overlay.loop);
    }
    const ms = metricsSettings(cfg);
    if (ms.enabled) {
      const m = (this.metrics = new MetricsSampler(cfg, log, { registry: this.registry }));
      this.pluginCalls = new PluginCalls(ms.pluginCallsFile, log);
      this.pluginCalls.register(this.registry);
      registerIpamFamilies(
        this.registry,
        ms.ipamDataDirs,
        () =>
          poolSizes(m.latest(), (net) =>
            m
              .endpointObjects()
              .filter((e) => e.spec.network === net)
              .flatMap((e) => e.spec.ips),
          ),
        m.intervalMs,
      );
    }
    if (dockerEnabled(cfg)) this.docker = new DockerPlugin(cfg, log);
    const dnsCfg = dnsConfigOf(cfg);
    if (dnsCfg) {
      this.dns = new DnsReconciler(cfg, dnsCfg, log, { resyncMs: opts.resyncMs });
      this.loops.push(this.dns.loop);
    }
    if (ms.enabled) {
      const services = this.services;
      registerServiceFamilies(this.registry, () => services.snapshot());
      const policy = this.policy;
      registerPolicyFamilies(this.registry, () => policy.settings.table, this.metrics?.intervalMs);
      const dns = this.dns;
      if (dns) registerDnsFamilies(this.registry, () => dns.serverMetrics());
    }
    if (cfg.alerts.enabled !== false)
      this.alerts = new AlertEngine(cfg, log.withPrefix('agent alerts'), () => this.metrics?.samples() ?? [], {
        sampledAt: () => this.metrics?.latest()?.at,
      });
    this.alerts?.registerMetrics(this.registry);
  }

  status(): AgentStatus {
    const st = this.cfg.store;
    return {
      node: this.cfg.node,
      pid: process.pid,
      startedAt: this.startedAt,
      store: st.type === 'file' ? `file ${st.path}` : `etcd ${st.endpoints.join(',')}${st.prefix ? ` ${st.prefix}` : ''}`,
      memory: { rss: mib(process.memoryUsage.rss()), heapUsed: mib(process.memoryUsage().heapUsed) },
      reconcilers: this.loops.map((l) => l.status()),
    };
  }

  async resync(name?: string): Promise<ReconcilerStatus[]> {
    const loops = this.loops.filter((l) => !name || l.name === name);
    if (!loops.length) throw new Error(`no reconciler named ${JSON.stringify(name)} (have: ${this.loops.map((l) => l.name).join(', ')})`);
    for (const l of loops) l.kick('api resync');
    await Promise.all(loops.map((l) => l.idle()));
    return loops.map((l) => l.status());
  }

  async start(): Promise<void> {
    const h: ApiHandlers = { status: () => this.status(), resync: (n) => this.resync(n), routes: new Map() };
    if (this.dns) {
      const dns = this.dns;
      h.dnsRecords = () => dns.records();
      h.dnsLookup = (name, type, network) => dns.lookup(name, type, network);
    }
    h.routes!.set('GET /metrics', metricsRoute(this.registry));
    if (this.metrics) {
      const m = this.metrics;
      h.metrics = (ns) =>
        m.latest(ns) ?? { node: this.cfg.node, at: new Date().toISOString(), intervalSeconds: m.intervalMs / 1000, endpoints: [] };
    }
    // the dashboard: the page at /, /api/v1/history, /api/v1/services (agent/dashboard/routes.ts)
    this.metrics?.onSample((snap) => this.history.add(snap));
    for (const [route, fn] of dashboardRoutes({
      history: this.history,
      services: () => this.services.snapshot(),
      policy: policySettings(this.cfg),
    }))
      h.routes!.set(route, fn);
    if (this.alerts) {
      const alerts = this.alerts;
      h.alerts = () => alerts.alerts();
      for (const [route, handler] of alerts.routes()) h.routes!.set(route, handler);
    }
    if (this.opts.http) this.servers.push(await startHttp(this.cfg.listen, h, this.log));
    if (this.opts.socket) this.servers.push(await startSocket(this.cfg.socket, h, this.log));
    this.policy.start();
    this.services.start();
    this.overlay?.start();
    this.dns?.start();
    this.metrics?.start();
    this.pluginCalls?.start();
    this.alerts?.start();
    await this.docker?.start();
  }

  async stop(): Promise<void> {
    await Promise.all([
      this.docker?.stop(),
      this.policy.stop(),
      this.services.stop(),
      this.overlay?.stop(),
      this.dns?.stop(),
      this.metrics?.stop(),
      this.alerts?.stop(),
      ...this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))),
    ]);
    if (this.opts.socket) rmSync(this.cfg.socket, { force: true });
  }
}

export async function main(argv: string[]): Promise<number> {
  const log = new Logger('agent', { ...process.env, CNI_LOG_LEVEL: process.env.CNI_LOG_LEVEL || 'info' });
  const a = parseArgs(argv);
  if (typeof a === 'string') {
    process.stderr.write(a ? `cni-ts agent: ${a}\n${USAGE}` : USAGE);
    return a ? 2 : 0;
  }
  let agent: Agent;
  try {
    const cfg = loadAgentConfig(a.config);
    const p = cfg.policy as { resyncSeconds?: unknown; logFile?: unknown; logLevel?: unknown };
    log.configure({ logFile: cfg.raw.logFile, logLevel: cfg.raw.logLevel });
    const resyncSeconds = a.resync ?? (typeof p.resyncSeconds === 'number' && p.resyncSeconds > 0 ? p.resyncSeconds : 10);
    const overlay = await overlaySettings(cfg);
    agent = new Agent(cfg, log, { resyncMs: resyncSeconds * 1000, http: a.http, socket: a.socket, overlay });
    await agent.start();
    log.info(
      `agent started: node ${cfg.node}, ${agent.status().store}, resync ${resyncSeconds}s, reconcilers ${agent.loops.map((l) => l.name).join(', ')}, config ${cfg.source}`,
    );
  } catch (e) {
    const err = e as { message?: string; details?: string };
    process.stderr.write(`cni-ts agent: ${err.message ?? String(e)}${err.details ? ` (${err.details})` : ''}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const done = (sig: string): void => {
      log.info(`${sig}: stopping`);
      resolve();
    };
    process.once('SIGTERM', () => done('SIGTERM'));
    process.once('SIGINT', () => done('SIGINT'));
    process.on('SIGHUP', () => {
      log.info('SIGHUP: resync');
      void agent.resync().catch(() => undefined);
    });
  });
  await agent.stop();
  // an etcd client's reconnect timers can outlive close(): the agent is done, do not wait on them
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}
