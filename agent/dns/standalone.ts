/**
 * Run the DNS server by hand or in tests, from a JSON file of objects instead of the store:
 *
 *   node --experimental-strip-types agent/dns/standalone.ts --objects objs.json [--config agent.json]
 *        [--listen IP[:port]]... [--upstream IP[:port]]... [--port N] [--no-gateways]
 *
 * The file holds an array of objects (or {"items": [...]}) of kinds Service, EndpointSlice,
 * Endpoint, Namespace; it is re-read on change and on SIGHUP. Prints "ready <addr:port> ..."
 * once listening; SIGUSR1 prints the metrics as JSON; SIGTERM/SIGINT stop it.
 */
import { readFileSync, watch } from 'node:fs';
import { parseArgs } from 'node:util';
import { objectsFromJson, startDns } from './index.ts';
import type { DnsAgentConfig } from './config.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      objects: { type: 'string' },
      config: { type: 'string' },
      listen: { type: 'string', multiple: true },
      upstream: { type: 'string', multiple: true },
      port: { type: 'string' },
      'no-gateways': { type: 'boolean' },
      'no-rate-limit': { type: 'boolean' },
    },
  });
  if (!values.objects) throw new Error('--objects FILE is required');
  const file = values.objects;
  const cfg: DnsAgentConfig = values.config ? (JSON.parse(readFileSync(values.config, 'utf8')) as DnsAgentConfig) : {};
  const dns = (cfg.dns ??= {});
  if (values.listen) dns.listen = [...(dns.listen ?? []), ...values.listen];
  if (values.upstream) dns.upstreams = [...(dns.upstreams ?? []), ...values.upstream];
  if (values.port) dns.port = Number(values.port);
  if (values['no-gateways']) dns.listenOnGateways = false;
  if (values['no-rate-limit']) dns.rateLimit = false;
  const h = await startDns(cfg, () => objectsFromJson(readFileSync(file, 'utf8')));
  const addrs = h.server.addresses();
  process.stdout.write(`ready ${addrs.map((a) => `${a.address}:${a.port}`).join(' ')}\n`);
  try {
    watch(file, () => h.scheduleRefresh());
  } catch {}
  process.on('SIGHUP', () => void h.refresh());
  process.on('SIGUSR1', () => process.stdout.write(`${JSON.stringify(h.server.metrics)}\n`));
  const stop = (): void => {
    void h.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: Error) => {
  process.stderr.write(`dns standalone: ${e.message}\n`);
  process.exit(1);
});
