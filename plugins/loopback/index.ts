/**
 * loopback: bring `lo` up in the container's network namespace (ADD), down again (DEL).
 * In-process over netlink under Bun (shared/kernel/netlink), else one `ip` process per verb
 * (nsenter --net=CNI_NETNS ip ...). Chained after other plugins it passes prevResult through
 * unchanged, like the reference.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin } from '../../shared/cni/plugin.ts';
import { cloneResult } from '../../shared/cni/result.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';
import { getLink, ipBatch, ipBatchJson, type LinkInfo } from '../../shared/kernel/ip.ts';
import { netnsExists, requireNetns } from '../../shared/kernel/netns.ts';
import { LO, loopbackProblems, loopbackResult } from './result.ts';

function parseLinks(stdout: string, what: string): LinkInfo[] {
  const text = stdout.trim();
  try {
    return text ? (JSON.parse(text) as LinkInfo[]) : [];
  } catch (e) {
    throw new CniError(ErrorCode.KernelOperation, `could not read ${what}`, (e as Error).message);
  }
}

export default definePlugin<NetConfBase>({
  name: 'loopback',
  about: 'brings the loopback interface (lo) up in the container network namespace',
  async add(req) {
    const netns = req.env.netns;
    requireNetns(netns);
    // Bring lo up and read it back (::1 only exists while lo is up): one `ip` process on the process path.
    const out = await ipBatchJson(
      [
        ['link', 'set', 'dev', LO, 'up'],
        ['addr', 'show', 'dev', LO],
      ],
      netns,
    );
    const link = parseLinks(out, `${LO} in ${netns}`)[0];
    if (!link) throw new CniError(ErrorCode.KernelOperation, `no loopback interface "${LO}" in ${netns}`);
    if (req.prevResult) return cloneResult(req.prevResult);
    return loopbackResult(link, netns);
  },
  async del(req) {
    const netns = req.env.netns;
    if (!netns || !netnsExists(netns)) {
      req.log.debug(`DEL: network namespace "${netns}" is gone; nothing to do`);
      return;
    }
    try {
      await ipBatch([['link', 'set', 'dev', LO, 'down']], netns);
    } catch (e) {
      // The namespace may vanish between the check and the call: that is success too.
      if (!netnsExists(netns)) return;
      const why = (e instanceof CniError ? e.details || e.message : String(e)).trim();
      throw new CniError(ErrorCode.KernelOperation, `could not bring ${LO} down in ${netns}: ${why.split('\n')[0]}`, why);
    }
  },
  async check(req) {
    const netns = req.env.netns;
    requireNetns(netns);
    const link = await getLink(LO, netns);
    // Addresses prevResult reports on an interface "lo" in this namespace must still be there.
    const prev = req.prevResult;
    const want = (prev?.ips ?? [])
      .filter(
        (ip) =>
          typeof ip.interface === 'number' &&
          prev?.interfaces?.[ip.interface]?.name === LO &&
          (prev.interfaces[ip.interface].sandbox ?? netns) === netns,
      )
      .map((ip) => ip.address);
    const problems = loopbackProblems(link, want);
    if (problems.length) throw new CniError(ErrorCode.CheckMismatch, `loopback: ${problems[0]}`, problems.join('; '));
  },
  async gc() {},
  async status() {},
});
