/**
 * host-device: hand an existing host interface (a NIC, an SR-IOV VF, a veth end, a macvlan, a
 * tap) to the container, and give it back unchanged on DEL.
 *
 * ADD records the device's host settings (file in `dataDir` + the device alias), moves it in
 * under a transit name, renames it to CNI_IFNAME, brings it up and applies the IPAM result.
 * DEL finds it again by alias / transit name / ifindex+MAC (wherever it is: container, or host
 * after the kernel returned it), moves it out and restores name, MTU, MAC, addresses, state.
 */
import schema from '../../conf/schemas/host-device.schema.json' with { type: 'json' };
import { delegate, ipamDel, withIpam } from '../../shared/cni/delegate.ts';
import { validIfname } from '../../shared/cni/env.ts';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import { definePlugin, type GcRequest, type Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { ipJson, ipSequence, listLinks, getLink, type LinkInfo, type RouteInfo } from '../../shared/kernel/ip.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import { withLock } from '../../shared/flock.ts';
import { familyOf } from '../../shared/ipnet.ts';
import { DEFAULT_DATA_DIR, ipamType, normalizeMac, selectorOf, type HostDeviceConf, type Selector } from './config.ts';
import {
  checkInterface,
  containerCommands,
  findRecorded,
  giveBack,
  hostAddrs,
  isUp,
  locate,
  missingRoutes,
  moveIn,
  needsRestore,
  notFound,
  restoreCommands,
} from './device.ts';
import {
  attachmentKey,
  decodeAlias,
  encodeAlias,
  isValidAttachment,
  recordFromAlias,
  RecordStore,
  transitName,
  type DeviceRecord,
} from './record.ts';

const storeOf = (c: HostDeviceConf): RecordStore => new RecordStore(c.dataDir ?? DEFAULT_DATA_DIR);

function heldBy(records: DeviceRecord[], sel: Selector): DeviceRecord | undefined {
  return records.find((r) => {
    switch (sel.by) {
      case 'device':
        return r.hostName === sel.name;
      case 'hwaddr':
        return normalizeMac(r.mac) === sel.mac;
      case 'pciBusID':
        return r.pci === sel.pci;
      case 'kernelpath':
        return r.kernelpath === sel.path;
    }
  });
}

const inUse = (dev: string, r: Pick<DeviceRecord, 'containerId' | 'ifname'>, extra = ''): CniError =>
  new CniError(
    ErrorCode.Conflict,
    `host-device: ${dev} is in use by container ${r.containerId} (as ${r.ifname})${extra}`,
    'a device can be attached to one container at a time; DEL that attachment first',
  );

/** Pick the device and take it (under the lock): checks, record, move into the container. */
async function take(req: Request<HostDeviceConf>, store: RecordStore): Promise<DeviceRecord> {
  const { env, config } = req;
  const sel = selectorOf(config);
  const key = attachmentKey(env.containerId, env.ifname);
  return withLock(store.dir, async () => {
    const records = store.list();
    const mine = records.find((r) => r.key === key);
    if (mine) {
      throw new CniError(
        ErrorCode.Conflict,
        `host-device: container ${env.containerId} already has "${mine.hostName}" attached as ${env.ifname}`,
        'DEL the attachment before adding it again',
      );
    }
    const found = locate(sel, await listLinks());
    const base = {
      version: 1 as const,
      containerId: env.containerId,
      ifname: env.ifname,
      netns: env.netns,
      key,
      tmpName: transitName(key),
    };
    const via = { ...(sel.by === 'pciBusID' ? { pci: sel.pci } : {}), ...(sel.by === 'kernelpath' ? { kernelpath: sel.path } : {}) };
    if (found.kind === 'dpdk') {
      const holder = records.find((r) => r.pci === found.pci);
      if (holder) throw inUse(`PCI device ${found.pci}`, holder);
      const rec: DeviceRecord = { ...base, ...via, hostName: '', mac: '', mtu: 0, up: false, alias: '', addrs: [], ifindex: 0, dpdk: true };
      store.put(rec);
      return rec;
    }
    if (found.kind === 'absent') {
      const holder = heldBy(records, sel);
      if (holder) throw inUse(`"${holder.hostName}"`, holder);
      throw notFound(sel, found.why);
    }
    const link = found.link;
    if (link.ifname === 'lo' || link.flags.includes('LOOPBACK')) throw invalidConfig(sel.field, 'the loopback interface cannot be moved');
    const tag = decodeAlias(typeof link.ifalias === 'string' ? link.ifalias : undefined);
    const holder = tag ? records.find((r) => r.key === tag.key) : undefined;
    if (tag || holder) {
      throw inUse(
        `"${link.ifname}"`,
        holder ?? { containerId: '(unknown: record lost)', ifname: '?' },
        ": it came back to the host when that container's namespace went away; DEL or GC that attachment to release it",
      );
    }
    const rec: DeviceRecord = {
      ...base,
      ...via,
      hostName: link.ifname,
      mac: normalizeMac(link.address ?? ''),
      mtu: link.mtu,
      up: isUp(link),
      alias: typeof link.ifalias === 'string' ? link.ifalias : '',
      addrs: hostAddrs(link),
      ifindex: link.ifindex,
      ...(link.linkinfo?.info_kind ? { kind: link.linkinfo.info_kind } : {}),
    };
    store.put(rec);
    try {
      await moveIn(rec, encodeAlias(rec), env.netns);
    } catch (e) {
      await undo(req, rec, store);
      throw e;
    }
    return rec;
  });
}

/** Give the device back after a failed ADD; the record stays when that fails too (for DEL). */
async function undo(req: Request<HostDeviceConf>, rec: DeviceRecord, store: RecordStore): Promise<void> {
  try {
    if (!rec.dpdk) await giveBack(rec, req.env.netns, req.env.ifname);
    store.remove(rec);
  } catch (e) {
    req.log.warn(`could not give ${rec.hostName} back after a failed ADD (DEL will retry): ${String(e)}`);
  }
}

function resultOf(rec: DeviceRecord, req: Request<HostDeviceConf>, ipam: Result | undefined): Result {
  const res: Result = {};
  if (!rec.dpdk) res.interfaces = [{ name: req.env.ifname, mac: rec.mac, ...(rec.mtu ? { mtu: rec.mtu } : {}), sandbox: req.env.netns }];
  if (ipam?.ips?.length) res.ips = ipam.ips.map((ip) => ({ ...ip, ...(rec.dpdk ? {} : { interface: 0 }) }));
  if (ipam?.routes?.length) res.routes = ipam.routes;
  const dns = req.config.dns && Object.keys(req.config.dns).length ? req.config.dns : ipam?.dns;
  if (dns) res.dns = dns;
  return res;
}

/** The container batch; a taken CNI_IFNAME (its first command fails with EEXIST) is said plainly. */
async function configure(rec: DeviceRecord, req: Request<HostDeviceConf>, ipam: Result | undefined): Promise<void> {
  try {
    await ipSequence(containerCommands(rec.tmpName, req.env.ifname, ipam), req.env.netns);
  } catch (e) {
    if (e instanceof CniError && /File exists/.test(e.details) && /-:1$/m.test(e.details)) {
      throw new CniError(
        ErrorCode.Conflict,
        `host-device: interface "${req.env.ifname}" already exists in the container`,
        `CNI_IFNAME ${req.env.ifname} in ${req.env.netns}; ${rec.hostName} was given back to the host`,
      );
    }
    throw e;
  }
}

async function add(req: Request<HostDeviceConf>): Promise<Result> {
  requireNetns(req.env.netns);
  const store = storeOf(req.config);
  const rec = await take(req, store);
  try {
    if (!ipamType(req.config)) {
      if (!rec.dpdk) await configure(rec, req, undefined);
      return resultOf(rec, req, undefined);
    }
    return await withIpam(req, async (ipam) => {
      if (!ipam.ips?.length)
        throw new CniError(
          ErrorCode.InvalidConfig,
          'host-device: IPAM plugin returned no IP config',
          `ipam.type "${ipamType(req.config)}"`,
        );
      if (!rec.dpdk) await configure(rec, req, ipam);
      return resultOf(rec, req, ipam);
    });
  } catch (e) {
    await undo(req, rec, store);
    throw e;
  }
}

/** No record file: rebuild it from the device's alias (ours, or the reference plugin's plain name). */
async function recover(req: Request<HostDeviceConf>): Promise<DeviceRecord | undefined> {
  const { env } = req;
  const key = attachmentKey(env.containerId, env.ifname);
  const match = (links: LinkInfo[], netns: string, inContainer: boolean): DeviceRecord | undefined => {
    for (const l of links) {
      const a = decodeAlias(typeof l.ifalias === 'string' ? l.ifalias : undefined);
      if (a?.key === key) return recordFromAlias(a, env.containerId, env.ifname, netns, l.ifindex);
    }
    const l = inContainer ? links.find((x) => x.ifname === env.ifname) : undefined;
    const alias = typeof l?.ifalias === 'string' ? l.ifalias : '';
    if (l && alias && validIfname(alias) && !decodeAlias(alias)) {
      // Attached by the reference host-device: its alias is the host name and nothing else is known.
      return {
        version: 1,
        containerId: env.containerId,
        ifname: env.ifname,
        netns,
        key,
        hostName: alias,
        tmpName: transitName(key),
        mac: '',
        mtu: 0,
        up: false,
        alias: '',
        addrs: [],
        ifindex: l.ifindex,
      };
    }
    return undefined;
  };
  if (env.netns && netnsExists(env.netns)) {
    const r = match(await listLinks(env.netns), env.netns, true);
    if (r) return r;
  }
  return match(await listLinks(), env.netns, false);
}

async function del(req: Request<HostDeviceConf>): Promise<void> {
  const { env } = req;
  const store = storeOf(req.config);
  let failure: unknown;
  let keepRecord = false;
  // Nothing of this attachment anywhere: done without taking the lock (which would create dataDir).
  const found = store.get(env.containerId, env.ifname) ?? (await recover(req));
  if (found)
    await withLock(store.dir, async () => {
      const rec = store.get(env.containerId, env.ifname) ?? (await recover(req));
      if (!rec || rec.dpdk) return;
      try {
        const outcome = await giveBack(rec, env.netns || undefined, env.ifname);
        if (outcome === 'gone')
          req.log.info(
            `${rec.hostName} is neither in the container nor on the host (virtual devices die with their namespace); dropping its record`,
          );
      } catch (e) {
        failure = e;
        keepRecord = true;
        // Explain a name clash better than "File exists".
        const host = await listLinks().catch(() => [] as LinkInfo[]);
        const dev = findRecorded(host, rec);
        if (dev && dev.ifname !== rec.hostName && host.some((l) => l.ifname === rec.hostName)) {
          try {
            restoreCommands(rec, dev, new Set(host.map((l) => l.ifname)));
          } catch (clash) {
            failure = clash;
          }
        }
      }
      if (!keepRecord) store.remove(rec);
    });
  if (ipamType(req.config)) await ipamDel(req);
  if (failure) throw failure;
}

async function check(req: Request<HostDeviceConf>): Promise<void> {
  const { env } = req;
  requireNetns(env.netns);
  const type = ipamType(req.config);
  if (type) await delegate(type, 'CHECK', req);
  const prev = req.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidConfig, 'host-device CHECK: prevResult is required', 'field "prevResult"');
  const ifaces = prev.interfaces ?? [];
  const idx = ifaces.findIndex((i) => i.name === env.ifname && (i.sandbox ?? '') === env.netns);
  const rec = storeOf(req.config).get(env.containerId, env.ifname);
  if (rec?.dpdk) return;
  if (idx < 0)
    throw new CniError(ErrorCode.CheckMismatch, `host-device CHECK: prevResult has no interface "${env.ifname}" in sandbox ${env.netns}`);
  const link = await getLink(env.ifname, env.netns);
  const ips = (prev.ips ?? []).filter((ip) => ip.interface === undefined || ip.interface === idx).map((ip) => ip.address);
  checkInterface(link, env.ifname, ifaces[idx].mac ?? rec?.mac, ips);
  const routes = prev.routes ?? [];
  for (const fam of [4, 6] as const) {
    if (!routes.some((r) => familyOf(r.dst) === fam)) continue;
    const have = await ipJson<RouteInfo[]>([`-${fam}`, 'route', 'show', 'table', 'all'], env.netns);
    const missing = missingRoutes(routes, have, fam);
    if (missing.length)
      throw new CniError(
        ErrorCode.CheckMismatch,
        `host-device CHECK: route ${missing[0].dst}${missing[0].gw ? ` via ${missing[0].gw}` : ''} is missing in the container`,
      );
  }
}

async function gc(req: GcRequest<HostDeviceConf>): Promise<void> {
  const store = storeOf(req.config);
  if (!store.list().some((r) => !isValidAttachment(r, req.validAttachments))) return; // nothing stale: no lock, no dataDir created
  await withLock(store.dir, async () => {
    const stale = store.list().filter((r) => !isValidAttachment(r, req.validAttachments));
    if (!stale.length) return;
    const host = await listLinks();
    for (const r of stale) {
      try {
        if (r.dpdk) {
          store.remove(r);
          continue;
        }
        const dev = findRecorded(host, r);
        if (dev) {
          if (needsRestore(dev, r)) await ipSequence(restoreCommands(r, dev, new Set(host.filter((l) => l !== dev).map((l) => l.ifname))));
          req.log.info(`GC: gave ${r.hostName} back (attachment ${r.containerId}/${r.ifname} is gone)`);
          store.remove(r);
        } else if (!netnsExists(r.netns)) {
          req.log.info(`GC: ${r.hostName} of ${r.containerId}/${r.ifname} no longer exists; dropping its record`);
          store.remove(r);
        } else {
          req.log.info(`GC: ${r.hostName} is still in ${r.netns}; leaving it to DEL`);
        }
      } catch (e) {
        req.log.warn(`GC: could not give ${r.hostName} back: ${String(e)}`);
      }
    }
  });
  const type = ipamType(req.config);
  if (type) await delegate(type, 'GC', req);
}

export default definePlugin<HostDeviceConf>({
  name: 'host-device',
  about: 'moves an existing host interface into the container and gives it back, unchanged, on DEL',
  schema,
  validateConfig(config, req) {
    // DEL finds the device by its record and alias, never by the selector.
    if (req.env.command !== 'DEL') selectorOf(config);
  },
  add,
  del,
  check,
  gc,
  async status(req) {
    const type = ipamType(req.config);
    if (type) await delegate(type, 'STATUS', req);
  },
});
