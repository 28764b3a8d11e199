/**
 * vrf (chained): put CNI_IFNAME into a VRF device of the container netns (created on first use,
 * with `table` or a free table id), keeping its IPv6 addresses and its routes (moved into the
 * VRF's table). DEL takes the interface out and deletes the VRF with its last member. Drop-in
 * for the Go reference `vrf`; the result is the prevResult, unchanged.
 */
import { bestEffort } from '../../shared/cni/besteffort.ts';
import { CniError, ErrorCode, invalidConfig } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { Result } from '../../shared/cni/types.ts';
import { familyOf } from '../../shared/ipnet.ts';
import { ipBatch, ipJson, type LinkInfo } from '../../shared/kernel/ip.ts';
import { addLinkOfKind, deleteLink, getLink, linkKind, routeCommand } from '../../shared/kernel/link.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import schema from '../../conf/schemas/vrf.schema.json' with { type: 'json' };
import { tableFor, type VrfConf } from './config.ts';

const tableOf = (l: LinkInfo): number | undefined => l.linkinfo?.info_data?.table as number | undefined;

async function vrfs(netns: string): Promise<LinkInfo[]> {
  return ipJson<LinkInfo[]>(['-details', 'link', 'show', 'type', 'vrf'], netns).catch(() => []);
}

async function add(req: Request<VrfConf>): Promise<Result> {
  const c = req.config;
  const { netns, ifname } = req.env;
  requireNetns(netns);
  const prev = req.prevResult;
  if (!prev) throw invalidConfig('prevResult', 'is required: vrf runs chained after an interface plugin');
  const [existing, iface] = await Promise.all([getLink(c.vrfname, netns), getLink(ifname, netns)]);
  if (!iface) throw new CniError(ErrorCode.InvalidEnvironment, `interface ${ifname} does not exist in ${netns}`);
  let table: number;
  if (existing) {
    if (linkKind(existing) !== 'vrf')
      throw new CniError(ErrorCode.Conflict, `${c.vrfname} exists in ${netns} and is not a VRF`, `kind ${linkKind(existing) ?? 'none'}`);
    table = tableOf(existing) ?? 0;
    if (c.table && table !== c.table)
      throw new CniError(ErrorCode.Conflict, `VRF ${c.vrfname} already exists with routing table ${table}`, `configured table ${c.table}`);
  } else {
    table = tableFor(
      c,
      (await vrfs(netns)).map((v) => tableOf(v) ?? 0),
    );
    await addLinkOfKind(['link', 'add', 'name', c.vrfname, 'type', 'vrf', 'table', String(table)], 'vrf', netns, [
      ['link', 'set', 'dev', c.vrfname, 'up'],
    ]);
  }
  // Enslaving drops the IPv6 addresses and leaves the routes in main: put both back, in the VRF.
  const v6 = (iface.addr_info ?? []).filter((a) => a.family === 'inet6' && a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`);
  const cmds: string[][] = [['link', 'set', 'dev', ifname, 'master', c.vrfname]];
  for (const a of v6) cmds.push(['addr', 'replace', a, 'dev', ifname, 'nodad']);
  const myIdx = (prev.interfaces ?? []).findIndex((i) => i.name === ifname && i.sandbox === netns);
  const gwOf = (fam: 4 | 6): string | undefined =>
    (prev.ips ?? []).find((i) => (i.interface === myIdx || i.interface === undefined) && familyOf(i.address) === fam && i.gateway)?.gateway;
  for (const r of prev.routes ?? [])
    cmds.push(routeCommand(ifname, { dst: r.dst, gw: r.gw ?? gwOf(familyOf(r.dst)), metric: r.priority, table }, 'replace'));
  try {
    await ipBatch(cmds, netns);
  } catch (e) {
    if (!existing) await deleteLink(c.vrfname, netns).catch(() => false);
    throw e;
  }
  return prev;
}

async function del(req: Request<VrfConf>): Promise<void> {
  const { netns, ifname } = req.env;
  if (!netnsExists(netns)) return;
  const vrf = await getLink(req.config.vrfname, netns);
  if (!vrf || linkKind(vrf) !== 'vrf') return;
  const { step, done } = bestEffort();
  await step(async () => {
    const l = await getLink(ifname, netns);
    if (l?.master === req.config.vrfname) await ipBatch([['link', 'set', 'dev', ifname, 'nomaster']], netns);
  });
  await step(async () => {
    const members = await ipJson<LinkInfo[]>(['link', 'show', 'master', req.config.vrfname], netns);
    if (!members.length) await deleteLink(req.config.vrfname, netns);
  });
  done();
}

async function check(req: Request<VrfConf>): Promise<void> {
  const { netns, ifname } = req.env;
  requireNetns(netns);
  const [vrf, l] = await Promise.all([getLink(req.config.vrfname, netns), getLink(ifname, netns)]);
  if (!vrf || linkKind(vrf) !== 'vrf') throw new CniError(ErrorCode.CheckMismatch, `VRF ${req.config.vrfname} is missing in ${netns}`);
  if (req.config.table && tableOf(vrf) !== req.config.table)
    throw new CniError(
      ErrorCode.CheckMismatch,
      `VRF ${req.config.vrfname} uses table ${String(tableOf(vrf))}, configured ${req.config.table}`,
    );
  if (!l || l.master !== req.config.vrfname)
    throw new CniError(ErrorCode.CheckMismatch, `${ifname} is not in VRF ${req.config.vrfname}`, `master ${l?.master ?? 'none'}`);
}

export default definePlugin<VrfConf>({
  name: 'vrf',
  about: 'chained: put the container interface into a VRF (created on first use), addresses and routes kept',
  schema,
  add,
  del,
  check,
  async gc() {},
  async status() {},
});
