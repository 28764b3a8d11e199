/**
 * bandwidth: limit what a container receives (a TBF at the root of its host-side veth) and
 * sends (the host veth's ingress redirected to an IFB device with a TBF at its root), chained
 * after an interface plugin. Drop-in for the reference plugin: same keys, units and IFB name.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin, type Request } from '../../shared/cni/plugin.ts';
import type { Interface, Result } from '../../shared/cni/types.ts';
import { getLink, ipBatch, linksNamed, type LinkInfo } from '../../shared/kernel/ip.ts';
import { deleteLink, randomMac } from '../../shared/kernel/link.ts';
import { tcBatch, tcClasses, tcJson, type QdiscInfo } from '../../shared/kernel/tc.ts';
import schema from '../../conf/schemas/bandwidth.schema.json' with { type: 'json' };
import {
  ifbName,
  isZero,
  limitsOf,
  redirectCommands,
  rootCommands,
  shaperOf,
  validateLimits,
  SHAPED_MINOR,
  UNSHAPED_MINOR,
  type BandwidthConf,
  type Limits,
  type Shaper,
} from './config.ts';

/** A kernel refusal that means the feature is not built in: code 101. */
function kernelError(e: unknown, what: string): never {
  if (
    e instanceof CniError &&
    /Unknown device type|qdisc kind is unknown|Unknown qdisc|Unknown filter|classifier not found|action module|[Oo]peration not supported/.test(
      `${e.message} ${e.details}`,
    )
  ) {
    throw new CniError(ErrorCode.KernelFeatureMissing, `the kernel lacks ${what}: ${e.message}`, e.details);
  }
  throw e;
}

/**
 * The host side of the container interface, among prevResult's interfaces without a sandbox:
 * the only veth there (one `ip` call: bridge and ptp results list the bridge and one veth), or
 * else the peer of CNI_IFNAME in the container's netns (the reference's rule). Undefined when
 * it cannot be found (the netns or the veth gone).
 */
async function hostInterface(req: Request<BandwidthConf>, prev: Result): Promise<LinkInfo | undefined> {
  const hostNames = new Set((prev.interfaces ?? []).filter((i) => !i.sandbox).map((i) => i.name));
  if (!hostNames.size) return undefined;
  const host = await linksNamed([...hostNames]);
  const veths = host.filter((l) => l.linkinfo?.info_kind === 'veth');
  if (veths.length === 1) return veths[0];
  if (!req.env.netns) return undefined;
  const inner = await getLink(req.env.ifname, req.env.netns).catch(() => undefined);
  if (!inner) return undefined;
  const peer = inner.link_index;
  return peer ? host.find((l) => l.ifindex === peer) : undefined;
}

async function mustHostInterface(req: Request<BandwidthConf>, prev: Result): Promise<LinkInfo> {
  const link = await hostInterface(req, prev);
  if (!link) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `no host-side veth peer of ${req.env.ifname} among prevResult's interfaces`,
      'field "prevResult"',
    );
  }
  return link;
}

/** Remove the IFB (gone already: fine). */
const deleteIfb = (ifb: string): Promise<unknown> => deleteLink(ifb).catch(() => false);

/**
 * Remove what ADD put on the host veth: the root qdisc if its handle is ADD's 1: (tbf or htb),
 * and the ingress qdisc (with the redirect filter). `-force`: one missing does not stop the other.
 */
async function deleteQdiscs(hostDev: string): Promise<void> {
  await tcBatch(
    [
      ['qdisc', 'del', 'dev', hostDev, 'root', 'handle', '1:'],
      ['qdisc', 'del', 'dev', hostDev, 'handle', 'ffff:', 'ingress'],
    ],
    { allowFail: true, force: true },
  );
}

async function teardown(hostDev: string | undefined, ifb: string): Promise<void> {
  await Promise.all([deleteIfb(ifb), hostDev ? deleteQdiscs(hostDev) : undefined]);
}

async function shape(host: LinkInfo, ifb: string, l: Limits): Promise<Interface | undefined> {
  const ingress = shaperOf(l.ingressRate, l.ingressBurst);
  const egress = shaperOf(l.egressRate, l.egressBurst);
  let ifbIface: Interface | undefined;
  const cmds: string[][] = [];
  if (ingress) cmds.push(...rootCommands(host.ifname, ingress, l, 'src'));
  if (egress) {
    const mac = randomMac();
    const txq = typeof host.txqlen === 'number' && host.txqlen > 0 ? host.txqlen : 1000;
    await ipBatch([
      ['link', 'add', 'name', ifb, 'address', mac, 'mtu', String(host.mtu), 'txqueuelen', String(txq), 'up', 'type', 'ifb'],
    ]).catch((e: unknown) => kernelError(e, 'IFB devices (CONFIG_IFB)'));
    ifbIface = { name: ifb, mac };
    cmds.push(...rootCommands(ifb, egress, l, 'dst'), ...redirectCommands(host.ifname, ifb));
  }
  await tcBatch(cmds).catch((e: unknown) => kernelError(e, 'a traffic control feature bandwidth needs (tbf, htb, ingress, u32, mirred)'));
  return ifbIface;
}

const near = (got: unknown, want: number): boolean => typeof got === 'number' && Math.abs(got - want) <= Math.max(1, want * 0.01);

/** What CHECK expects at the root of `dev`; a message for what differs. */
async function checkRoot(dev: string, s: Shaper, l: Limits): Promise<string | undefined> {
  const qs = await tcJson<QdiscInfo>(['qdisc', 'show', 'dev', dev]);
  const root = qs.find((q) => q.root);
  const subnets = l.unshapedSubnets.length || l.shapedSubnets.length;
  const kind = subnets ? 'htb' : 'tbf';
  if (!root || root.kind !== kind) return `${dev}: no ${kind} qdisc at the root (found ${root?.kind ?? 'none'})`;
  if (kind === 'tbf') {
    if (!near(root.options?.rate, s.rateBytes)) return `${dev}: tbf rate ${String(root.options?.rate)} B/s, expected ${s.rateBytes}`;
    if (!near(root.options?.burst, s.burstBytes)) return `${dev}: tbf burst ${String(root.options?.burst)} B, expected ${s.burstBytes}`;
    return undefined;
  }
  const deflt = l.unshapedSubnets.length ? SHAPED_MINOR : UNSHAPED_MINOR;
  if (root.options?.default !== `0x${deflt}`) return `${dev}: htb default class ${String(root.options?.default)}, expected 0x${deflt}`;
  const classes = await tcClasses(dev);
  const shaped = classes.find((c) => c.handle === `1:${SHAPED_MINOR}`);
  if (!shaped || !near(shaped.rate, s.rateBytes))
    return `${dev}: htb class 1:${SHAPED_MINOR} rate ${String(shaped?.rate)} B/s, expected ${s.rateBytes}`;
  if (!classes.some((c) => c.handle === `1:${UNSHAPED_MINOR}`)) return `${dev}: htb class 1:${UNSHAPED_MINOR} missing`;
  return undefined;
}

interface FilterInfo {
  options?: { actions?: Array<{ kind?: string; to_dev?: string }> };
}

export default definePlugin<BandwidthConf>({
  name: 'bandwidth',
  about: "limit a container's traffic in both directions (tc TBF on the host veth, an IFB for egress), chained after an interface plugin",
  schema,
  validateConfig(config, req) {
    // DEL removes the IFB named by the attachment whatever the limits say (the reference too).
    const l = limitsOf(config);
    if (l && req.env.command !== 'DEL') validateLimits(l);
  },

  async add(req) {
    const prev = req.prevResult;
    if (!prev)
      throw new CniError(ErrorCode.InvalidConfig, 'must be called as a chained plugin: prevResult is missing', 'field "prevResult"');
    const l = limitsOf(req.config);
    if (!l || isZero(l)) return prev;
    const host = await mustHostInterface(req, prev);
    const ifb = ifbName(req.config.name, req.env.containerId);
    try {
      const ifbIface = await shape(host, ifb, l);
      return ifbIface ? { ...prev, interfaces: [...(prev.interfaces ?? []), ifbIface] } : prev;
    } catch (e) {
      await teardown(host.ifname, ifb);
      throw e;
    }
  },

  async del(req) {
    // The IFB goes at once (its deletion waits for an RCU grace period) while the veth is looked up.
    const gone = deleteIfb(ifbName(req.config.name, req.env.containerId));
    const host = req.prevResult ? await hostInterface(req, req.prevResult).catch(() => undefined) : undefined;
    await Promise.all([gone, host ? deleteQdiscs(host.ifname) : undefined]);
  },

  async check(req) {
    const l = limitsOf(req.config);
    if (!l || isZero(l) || !req.prevResult) return;
    const host = await mustHostInterface(req, req.prevResult);
    const ingress = shaperOf(l.ingressRate, l.ingressBurst);
    const egress = shaperOf(l.egressRate, l.egressBurst);
    const ifb = ifbName(req.config.name, req.env.containerId);
    const problems = await Promise.all([
      ingress ? checkRoot(host.ifname, ingress, l) : undefined,
      egress ? checkRoot(ifb, egress, l) : undefined,
      egress
        ? tcJson<FilterInfo>(['filter', 'show', 'dev', host.ifname, 'ingress']).then((fs) =>
            fs.some((f) => f.options?.actions?.some((a) => a.kind === 'mirred' && a.to_dev === ifb))
              ? undefined
              : `${host.ifname}: no ingress filter redirecting to ${ifb}`,
          )
        : undefined,
    ]);
    const bad = problems.find((p) => p);
    if (bad) throw new CniError(ErrorCode.CheckMismatch, bad);
  },

  // The reference has no GC/STATUS yet; ours: nothing to collect (the IFB goes with DEL), always ready.
  async gc() {},
  async status() {},
});
