/**
 * portmap: publish container ports on the host (DNAT from hostIP:hostPort to the container),
 * chained after an interface plugin. nftables (default) or iptables.
 */
import { writeFileSync, readFileSync } from 'node:fs';
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import { conntrackDeleteUdpToPort } from '../../shared/kernel/conntrack.ts';
import { routeDev } from '../../shared/kernel/ip.ts';
import { validIfname } from '../../shared/cni/env.ts';
import { canonicalizeKeys, canonicalizeListKeys } from '../../shared/cni/keys.ts';
import schema from '../../conf/schemas/portmap.schema.json' with { type: 'json' };
import type { Backend } from './backend.ts';
import {
  attachmentComment,
  attachmentTag,
  containerAddrs,
  mappingsOf,
  networkTag,
  planOf,
  settingsOf,
  validatePortmapConf,
  type FamilyPlan,
  type PortmapConf,
  type Settings,
} from './config.ts';
import { nftBackend } from './nft-backend.ts';
import { iptablesBackend } from './iptables-backend.ts';

const backendOf = (s: Settings): Backend => (s.backend === 'iptables' ? iptablesBackend : nftBackend);

function plansOf(req: Request<PortmapConf>, s: Settings): FamilyPlan[] {
  const mappings = mappingsOf(req.config);
  if (!mappings.length || !req.prevResult) return [];
  return planOf(s, mappings, containerAddrs(req.prevResult, req.env.ifname));
}

/**
 * Let 127.0.0.0/8 sources be routed out of the interface that leads to the container, so
 * `127.0.0.1:hostPort` works (the flow is then masqueraded in postrouting).
 */
async function enableRouteLocalnet(req: Request<PortmapConf>, containerIP: string): Promise<void> {
  const dev = await routeDev(containerIP);
  if (!dev || !validIfname(dev) || dev === 'lo') {
    req.log.warn(`no host interface routes to ${containerIP}; 127.0.0.1:hostPort will not reach it`);
    return;
  }
  const p = `/proc/sys/net/ipv4/conf/${dev}/route_localnet`;
  try {
    if (readFileSync(p, 'utf8').trim() !== '1') writeFileSync(p, '1');
  } catch (e) {
    req.log.warn(`could not set ${p}: ${(e as Error).message}`);
  }
}

/** UDP flows to a host port seen before the mapping existed stay stuck on the host: drop them. */
async function flushStaleUdp(req: Request<PortmapConf>, plans: FamilyPlan[]): Promise<void> {
  const seen = new Set<string>();
  for (const p of plans) {
    for (const m of p.mappings) {
      const key = `${p.container.family}/${m.hostPort}`;
      if (m.protocol !== 'udp' || seen.has(key)) continue;
      seen.add(key);
      const why = await conntrackDeleteUdpToPort(p.container.family, m.hostPort);
      if (why !== undefined) req.log.info(`conntrack -D for udp/${m.hostPort}: ${why}`);
    }
  }
}

export default definePlugin<PortmapConf>({
  name: 'portmap',
  about: 'publish container ports on the host (DNAT, hairpin and localhost), chained after an interface plugin',
  schema,
  normalize(raw) {
    // containerd 1.6 sends {"HostPort":..,"ContainerPort":..,"Protocol":..,"HostIP":..}.
    const rc = raw.runtimeConfig;
    canonicalizeKeys(rc, ['portMappings']);
    canonicalizeListKeys((rc as { portMappings?: unknown } | undefined)?.portMappings, ['hostPort', 'containerPort', 'protocol', 'hostIP']);
  },
  validateConfig(config, req) {
    // DEL removes what the attachment's tag owns: the mapping semantics do not matter to it.
    if (req.env.command !== 'DEL') validatePortmapConf(config);
  },

  async add(req) {
    if (!req.prevResult) {
      throw new CniError(
        ErrorCode.InvalidConfig,
        'portmap must be called as a chained plugin: prevResult is missing',
        'field "prevResult"',
      );
    }
    const s = settingsOf(req.config);
    const plans = plansOf(req, s);
    if (plans.length) {
      const { containerId, ifname } = req.env;
      // route_localnet (an `ip route get` and a sysctl; it never fails) while the rules go in.
      const v4 = plans.find((p) => p.container.family === 4);
      const localnet = s.snat && v4 ? enableRouteLocalnet(req, v4.container.ip) : Promise.resolve();
      try {
        await backendOf(s).add(
          s,
          attachmentTag(req.config.name, containerId, ifname),
          attachmentComment(req.config.name, containerId, ifname),
          plans,
        );
      } finally {
        await localnet;
      }
      await flushStaleUdp(req, plans);
    } else if (mappingsOf(req.config).length) {
      req.log.info('portMappings given, but prevResult has no address of this interface: nothing to publish');
    }
    return req.prevResult;
  },

  async del(req) {
    // No mappings, nothing to do: no lock, no process (plugins#510).
    if (!mappingsOf(req.config).length) return;
    const s = settingsOf(req.config);
    await backendOf(s).del(s, attachmentTag(req.config.name, req.env.containerId, req.env.ifname));
  },

  async check(req) {
    if (!req.prevResult) throw new CniError(ErrorCode.InvalidConfig, 'portmap CHECK needs prevResult', 'field "prevResult"');
    const s = settingsOf(req.config);
    const plans = plansOf(req, s);
    if (!plans.length) return;
    await backendOf(s).check(s, attachmentTag(req.config.name, req.env.containerId, req.env.ifname), plans);
  },

  async gc(req) {
    const s = settingsOf(req.config);
    const valid = new Set(req.validAttachments.map((a) => attachmentTag(req.config.name, a.containerID, a.ifname)));
    await backendOf(s).gc(s, networkTag(req.config.name), valid);
  },

  async status(req) {
    const s = settingsOf(req.config);
    await backendOf(s).status(s);
  },
});
