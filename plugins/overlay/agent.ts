/**
 * `overlay agent --config FILE`: keeps this host's overlay converged while it runs. It holds
 * the subnet lease (renewing it at a third of its TTL), watches the store and reconciles peers
 * when hosts join or leave, re-creates the VXLAN device when it disappears, and rides out store
 * outages (etcd restarts): every failure is logged and retried at the next tick.
 */
import { readFileSync } from 'node:fs';
import { CniError } from '../../shared/cni/errors.ts';
import { Logger } from '../../shared/cni/log.ts';
import { prepareValidators, validate } from '../../shared/cni/validate.ts';
import schema from '../../conf/schemas/overlay.schema.json' with { type: 'json' };
import { overlayConfigOf, settingsOf, type OverlayConf, type Settings } from '../../shared/overlay/config.ts';
import { converge } from '../../shared/overlay/converge.ts';
import { checkEncryption } from '../../shared/overlay/encryption.ts';
import { openStore, type ClusterLeaseStore } from '../../shared/overlay/store.ts';

const USAGE = 'usage: overlay agent --config FILE   (a .conf or .conflist holding the overlay config)\n';

export class Agent {
  private store: ClusterLeaseStore | undefined;
  private lastPrune = 0;
  private stopWatch: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = false;
  private first = true;
  private lastVtepCheck = '';
  constructor(
    private readonly s: Settings,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const tick = Math.max(0.2, Math.min(this.s.resyncInterval, this.s.leaseTTL / 3));
    this.timer = setInterval(() => this.kick('resync'), tick * 1000);
    this.kick('start');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.stopWatch?.();
    await this.store?.close().catch(() => undefined);
  }

  /** Ask for a reconcile; overlapping requests collapse into one more pass. */
  kick(why: string): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.pass(why).finally(() => {
      this.running = false;
      if (this.again && !this.stopped) {
        this.again = false;
        this.kick('pending');
      }
    });
  }

  private async ensureStore(): Promise<ClusterLeaseStore> {
    if (!this.store) {
      const store = await openStore(this.s.store, this.s.name, { persistent: true });
      try {
        this.stopWatch = await store.watch(() => this.kick('watch'));
      } catch (e) {
        await store.close().catch(() => undefined); // no store without its watch: the next pass opens both again
        throw e;
      }
      this.store = store;
    }
    return this.store;
  }

  private async resetStore(): Promise<void> {
    this.stopWatch?.();
    this.stopWatch = undefined;
    const st = this.store;
    this.store = undefined;
    await st?.close().catch(() => undefined);
  }

  /** Expired leases of the network leave the store (at most once a minute, or once a leaseTTL when shorter). */
  private async prune(store: ClusterLeaseStore): Promise<void> {
    if (Date.now() - this.lastPrune < Math.min(60, this.s.leaseTTL) * 1000) return;
    this.lastPrune = Date.now();
    try {
      const gone = await store.prune();
      if (gone.length) this.log.info(`removed expired lease(s) ${gone.join(' ')}`);
    } catch (e) {
      this.log.warn(`removing expired leases: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private failures = 0;
  private async pass(why: string): Promise<void> {
    try {
      const store = await this.ensureStore();
      const c = await converge(this.s, store, this.log, { masq: this.first });
      if (this.first || c.vtepRecreated)
        this.log.info(`converged (${why}): subnet ${c.lease.subnet} via ${c.underlay.dev} ${c.underlay.ip}, ${c.peers.length} peer(s)`);
      const summary = `${c.lease.subnet} peers=${c.peers
        .map((p) => p.subnet)
        .sort()
        .join(',')}`;
      if (summary !== this.lastVtepCheck) {
        this.log.info(`state: ${summary}`);
        this.lastVtepCheck = summary;
      }
      this.first = false;
      this.failures = 0;
      await this.prune(store);
    } catch (e) {
      this.failures++;
      const msg = e instanceof CniError ? `${e.message}${e.details ? ` (${e.details})` : ''}` : e instanceof Error ? e.message : String(e);
      this.log.warn(`reconcile (${why}) failed [${this.failures}]: ${msg}`);
      // A client that keeps failing is replaced: new connection, new watch.
      if (this.failures % 3 === 0) await this.resetStore();
    }
  }
}

function parseArgs(argv: string[]): { config?: string; error?: string } {
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--config' || a === '-c') config = argv[++i];
    else if (a.startsWith('--config=')) config = a.slice('--config='.length);
    else return { error: `unknown argument "${a}"` };
  }
  return config ? { config } : { error: '--config FILE is required' };
}

export async function agentMain(argv: string[]): Promise<number> {
  const log = new Logger('overlay-agent', { ...process.env, CNI_LOG_LEVEL: process.env.CNI_LOG_LEVEL || 'info' });
  const a = parseArgs(argv);
  if (a.error || !a.config) {
    process.stderr.write(`overlay agent: ${a.error}\n${USAGE}`);
    return 2;
  }
  let s: Settings;
  try {
    await prepareValidators([[schema, 'overlay']]);
    const conf = validate<OverlayConf>(
      schema,
      overlayConfigOf(JSON.parse(readFileSync(a.config, 'utf8')) as Record<string, unknown>),
      'overlay',
    );
    log.configure(conf as { logFile?: unknown; logLevel?: unknown });
    s = settingsOf(conf);
    await checkEncryption(s.encryption);
  } catch (e) {
    process.stderr.write(`overlay agent: ${a.config}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const agent = new Agent(s, log);
  await agent.start();
  log.info(`agent started: network ${s.name} ${s.store.type} store, resync ${s.resyncInterval}s, lease TTL ${s.leaseTTL}s`);
  await new Promise<void>((resolve) => {
    const done = (sig: string): void => {
      log.info(`${sig}: stopping (the lease stays until its TTL runs out, so a restart keeps the subnet)`);
      resolve();
    };
    process.once('SIGTERM', () => done('SIGTERM'));
    process.once('SIGINT', () => done('SIGINT'));
  });
  await agent.stop();
  // The etcd client's reconnect timers can outlive close(); the agent is done, so do not wait on them.
  setTimeout(() => process.exit(0), 1000).unref();
  return 0;
}
