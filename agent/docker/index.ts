/**
 * The agent's Docker plugin socket: libnetwork's remote NetworkDriver and IpamDriver over
 * HTTP+JSON on a unix socket (`docker.socket`, default /run/docker/plugins/<docker.name>.sock,
 * where dockerd discovers plugins by name). Every call is `POST /<Interface>.<Method>` with a
 * JSON body; a failure is answered `{"Err": "..."}` with status 200, as the protocol wants
 * for a request it understood (Docker prints the text). See docs/docker.md.
 */
import { mkdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AgentConfig } from '../../shared/agentconfig.ts';
import type { Logger } from '../../shared/cni/log.ts';
import { openStore } from '../../shared/store/index.ts';
import type { ObjectStore } from '../../shared/store/types.ts';
import type { DockerEndpoint } from '../../shared/objects/types.ts';
import { DockerDriver, dockerSettings, type DockerSettings } from './driver.ts';
import { lookupContainer, withContainer } from './resolver.ts';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';
const MAX_BODY = 1 << 20;

/** Whether the agent config asks for the Docker plugin (a `docker` section, `enabled` not false). */
export const dockerEnabled = (cfg: AgentConfig): boolean => cfg.raw.docker !== undefined && cfg.docker.enabled !== false;

export class DockerPlugin {
  private server?: http.Server;
  private store?: ObjectStore;
  driver?: DockerDriver;
  readonly s: DockerSettings;
  private stopped = false;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
  ) {
    this.s = dockerSettings(cfg, path.dirname(process.execPath));
  }

  async start(): Promise<void> {
    this.store = await openStore(this.cfg.store);
    const driver = new DockerDriver(this.cfg, this.s, this.store, this.log);
    driver.onJoined = (ep) => void this.resolve(driver, ep);
    this.driver = driver;
    mkdirSync(path.dirname(this.s.socket), { recursive: true });
    rmSync(this.s.socket, { force: true });
    const server = http.createServer((req, res) => void this.serve(driver, req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.s.socket, () => resolve());
    });
    this.server = server;
    this.log.info(`docker: serving NetworkDriver and IpamDriver "${this.s.name}" on ${this.s.socket}`);
    void this.resolvePending(driver);
  }

  /** After a restart: look up the containers of joined endpoints whose names were not learnt yet. */
  private async resolvePending(driver: DockerDriver): Promise<void> {
    try {
      const eps = (await this.store!.list<DockerEndpoint>('DockerEndpoint')).items
        .map((i) => i.object)
        .filter((e) => e.spec.node === this.cfg.node && e.spec.sandboxKey);
      for (const ep of eps) {
        const reg = await driver.registration(ep);
        if (reg && !reg.object.metadata.annotations?.['cni-ts.dev/docker-container']) void this.resolve(driver, ep);
        // named before the restart: a hold the stopped agent did not lift is lifted now
        else if (this.s.holdUntilLabelled) await driver.setHeld(ep, false).catch(() => undefined);
      }
    } catch (e) {
      this.log.warn(`docker: looking for endpoints without container names: ${(e as Error).message}`);
    }
  }

  private async serve(driver: DockerDriver, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = (req.url ?? '').replace(/^\//, '').split('?')[0] ?? '';
    let text = '';
    let size = 0;
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'Content-Type': CONTENT_TYPE });
      res.end(JSON.stringify(body));
    };
    try {
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > MAX_BODY) return reply(400, { Err: 'request body too large' });
        text += String(chunk);
      }
      let body: Record<string, unknown> = {};
      if (text.trim()) {
        try {
          const v = JSON.parse(text) as unknown;
          if (v && typeof v === 'object' && !Array.isArray(v)) body = v as Record<string, unknown>;
          else return reply(400, { Err: `${method}: the request is not a JSON object` });
        } catch (e) {
          return reply(400, { Err: `${method}: the request is not JSON: ${(e as Error).message}` });
        }
      }
      if (req.method !== 'POST') return reply(405, { Err: `${method}: use POST` });
      if (!driver.handlers[method]) return reply(404, { Err: `cni-ts does not implement ${method}` });
      const t0 = performance.now();
      const out = await driver.handle(method, body);
      this.log.debug(`docker: ${method} ok in ${Math.round(performance.now() - t0)} ms`);
      reply(200, out);
    } catch (e) {
      const msg = (e as Error).message ?? String(e);
      this.log.warn(`docker: ${method} failed: ${msg}`);
      reply(200, { Err: msg });
    }
  }

  /**
   * After Join: learn the container's names, labels and aliases from dockerd (background). Join
   * held the endpoint's host veth down: it comes up once the labels are registered and this
   * node's policy is programmed for them, or after `holdSeconds` whatever happened (then with a
   * warning: the container's traffic is policed by what is known of it, its namespace).
   */
  private async resolve(driver: DockerDriver, ep: DockerEndpoint): Promise<void> {
    if (!this.s.dockerHost || !driver.markResolving(ep.metadata.name, true)) return;
    let released = false;
    const release = async (why?: string): Promise<void> => {
      if (released || !this.s.holdUntilLabelled) return;
      released = true;
      if (why) this.log.warn(`docker: endpoint ${ep.metadata.name.slice(0, 12)}: released without its labels: ${why}`);
      await driver
        .setHeld(ep, false)
        .catch((e: unknown) => this.log.warn(`docker: releasing endpoint ${ep.metadata.name.slice(0, 12)}: ${(e as Error).message}`));
    };
    const timer = setTimeout(
      () => void release(`dockerd did not name its container within ${this.s.holdSeconds} s`),
      this.s.holdSeconds * 1000,
    );
    try {
      const c = await lookupContainer(this.s.dockerHost, ep.spec.networkId, ep.metadata.name, 60_000);
      if (this.stopped) return;
      if (!c) {
        this.log.warn(
          `docker: dockerd did not name the container of endpoint ${ep.metadata.name.slice(0, 12)}: registered without names and labels`,
        );
        return;
      }
      let skipped: string[] = [];
      await driver.updateRegistration(ep, (e) => {
        const r = withContainer(e, c);
        skipped = r.skipped;
        return r.endpoint;
      });
      if (skipped.length)
        this.log.warn(`docker: container ${c.name}: labels that are not label syntax were not registered: ${skipped.join(', ')}`);
      this.log.info(
        `docker: endpoint ${ep.metadata.name.slice(0, 12)} is container ${c.name} (${Object.keys(c.labels).length} labels, aliases ${c.aliases.join(',') || 'none'})`,
      );
      if (this.s.holdUntilLabelled && !released) {
        // the labels are in the store: this node's table for them before the first packet
        await driver.programPolicy();
        await release();
      }
    } catch (e) {
      if (!this.stopped)
        this.log.warn(`docker: asking ${this.s.dockerHost} about endpoint ${ep.metadata.name.slice(0, 12)}: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
      driver.markResolving(ep.metadata.name, false);
      if (!this.stopped) await release('its container was not found or the lookup failed');
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const closed = new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server?.closeAllConnections();
    await closed;
    rmSync(this.s.socket, { force: true });
    await this.store?.close().catch(() => undefined);
  }
}
