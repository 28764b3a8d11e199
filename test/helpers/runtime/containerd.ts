/**
 * A private containerd (own config, root, state and socket under one temp tree) with its CRI
 * plugin pointed at a per-test CNI bin_dir/conf_dir, and a busybox sandbox ("pause") image
 * imported from an OCI layout tar. The system's containerd, if any, is never touched.
 */
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sh, type Cleanup } from '../netns.ts';
import { eventually, makeTempTree } from './common.ts';
import { CriClient } from './cri.ts';
import { buildRootfs, ociImageTar } from './image.ts';
import { populatePluginDir, type PluginPlan } from './plugins.ts';

export class Containerd {
  readonly socket: string;
  readonly binDir: string;
  readonly confDir: string;
  readonly sandboxImage: string;
  readonly config: string;
  cri!: CriClient;
  private daemon: ResultPromise | undefined;
  /** the shim's hard-coded socket dirs (/run/containerd/s) this instance created */
  private createdRunDirs: string[] = [];
  /** /run/netns entries before this instance started */
  private netnsBefore = new Set<string>();
  /** sandboxes this test made, removed on teardown */
  readonly pods = new Set<string>();

  readonly dir: string;

  // (no parameter properties: bench/ loads this file with Node's type stripping)
  constructor(dir: string, tag: string) {
    this.dir = dir;
    this.socket = path.join(dir, 'containerd.sock');
    this.binDir = path.join(dir, 'cni-bin');
    this.confDir = path.join(dir, 'net.d');
    this.config = path.join(dir, 'config.toml');
    this.sandboxImage = `docker.io/library/cnits-pause:${tag}`;
  }

  /** The containerd 1.6 config (version 2) of this private instance. */
  configToml(): string {
    const d = this.dir;
    const cri = '[plugins."io.containerd.grpc.v1.cri"]';
    return [
      'version = 2',
      `root = "${path.join(d, 'root')}"`,
      `state = "${path.join(d, 'state')}"`,
      'disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
      '[grpc]',
      `  address = "${this.socket}"`,
      '[ttrpc]',
      `  address = "${this.socket}.ttrpc"`,
      '[debug]',
      '  address = ""',
      '[metrics]',
      '  address = ""',
      cri,
      `  sandbox_image = "${this.sandboxImage}"`,
      '  restrict_oom_score_adj = true',
      '  stream_server_address = "127.0.0.1"',
      '  stream_server_port = "0"',
      '  enable_selinux = false',
      `${cri.slice(0, -1)}.containerd]`,
      '  snapshotter = "native"',
      '  default_runtime_name = "runc"',
      `${cri.slice(0, -1)}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `${cri.slice(0, -1)}.containerd.runtimes.runc.options]`,
      '  SystemdCgroup = false',
      `  Root = "${path.join(d, 'runc')}"`,
      `${cri.slice(0, -1)}.cni]`,
      `  bin_dir = "${this.binDir}"`,
      `  conf_dir = "${this.confDir}"`,
      '  max_conf_num = 1',
      '',
    ].join('\n');
  }

  async start(plan: PluginPlan, conflist: Record<string, unknown>): Promise<void> {
    const d = this.dir;
    this.createdRunDirs = SHIM_RUN_DIRS.filter((p) => !existsSync(p));
    this.netnsBefore = new Set(listNetns());
    for (const s of ['root', 'state', 'net.d', 'image']) mkdirSync(path.join(d, s), { recursive: true });
    populatePluginDir(this.binDir, plan);
    // the CNI config must be there before CRI starts (it reports the network not ready otherwise)
    writeFileSync(path.join(this.confDir, '10-cnits.conflist'), JSON.stringify(conflist, null, 2));
    writeFileSync(this.config, this.configToml());
    const log = path.join(d, 'containerd.log');
    this.daemon = execa('containerd', ['--config', this.config, '--log-level', 'info'], {
      reject: false,
      stdin: 'ignore',
      stdout: { file: log },
      stderr: { file: log },
      // CNI_TS_TRACE reaches the plugins (containerd runs them with its own environment)
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        TMPDIR: path.join(d, 'state'),
        ...(process.env.CNI_TS_TRACE ? { CNI_TS_TRACE: process.env.CNI_TS_TRACE } : {}),
      },
      extendEnv: false,
    });
    const up = await eventually(async () => existsSync(this.socket), 100, 100);
    if (!up) throw new Error(`containerd did not start: ${readFileSync(log, 'utf8').slice(-2000)}`);
    this.cri = new CriClient(this.socket);
    await this.importSandboxImage();
  }

  private async importSandboxImage(): Promise<void> {
    const work = path.join(this.dir, 'image');
    const rootfs = path.join(work, 'rootfs');
    buildRootfs(rootfs);
    const tar = path.join(work, 'pause.tar');
    // the sandbox process must keep running; busybox httpd in the foreground also serves the
    // port-mapping test (the sandbox holds the pod's network namespace, no container is needed)
    await ociImageTar(rootfs, work, tar, this.sandboxImage, ['/bin/httpd', '-f', '-p', '80', '-h', '/www']);
    await this.ctr(['images', 'import', '--snapshotter', 'native', tar]);
  }

  async ctr(args: string[]): Promise<string> {
    return (await sh('ctr', ['--address', this.socket, '-n', 'k8s.io', ...args])).stdout;
  }

  /** RunPodSandbox with metadata derived from `name`; remembered for teardown. */
  async runPod(name: string, extra: Partial<Parameters<CriClient['runPodSandbox']>[0]> = {}): Promise<string> {
    const id = await this.cri.runPodSandbox({
      metadata: { name, uid: `uid-${name}`, namespace: 'cnits', attempt: 0 },
      hostname: name,
      logDirectory: path.join(this.dir, 'pods', name),
      linux: { securityContext: { namespaceOptions: { network: 'POD' } } },
      ...extra,
    });
    this.pods.add(id);
    return id;
  }

  async removePod(id: string): Promise<void> {
    await this.cri.stopPodSandbox(id);
    await this.cri.removePodSandbox(id);
    this.pods.delete(id);
  }

  /** The sandbox's network namespace path, from the verbose status (runtimeSpec linux namespaces). */
  async netnsPath(id: string): Promise<string> {
    const { info } = await this.cri.podSandboxStatus(id);
    const spec = info.runtimeSpec as { linux?: { namespaces?: Array<{ type: string; path?: string }> } } | undefined;
    return spec?.linux?.namespaces?.find((n) => n.type === 'network')?.path ?? '';
  }

  /** Remove remaining pods, stop the daemon, then any shim of this instance left over. */
  async teardown(): Promise<void> {
    for (const id of [...this.pods]) {
      try {
        await this.removePod(id);
      } catch {
        /* best effort */
      }
    }
    this.cri?.close();
    if (this.daemon?.pid) {
      const d = this.daemon;
      let exited = false;
      void d.then(() => (exited = true));
      d.kill('SIGTERM');
      await Promise.race([d, new Promise((r) => setTimeout(r, 10_000))]);
      if (!exited) d.kill('SIGKILL');
      await d;
    }
    for (const pid of shimsOf(this.socket)) await sh('kill', ['-9', String(pid)], { allowFail: true });
    // a sandbox whose ADD and then DEL failed keeps its netns (cni-<uuid>) and the sandbox
    // record is gone: remove the cni-* namespaces that appeared while this instance ran and
    // hold nothing but lo (no other containerd runs in the tests)
    for (const name of listNetns().filter((n) => n.startsWith('cni-') && !this.netnsBefore.has(n))) {
      const r = await sh('ip', ['-n', name, '-j', 'link', 'show'], { allowFail: true });
      let links: Array<{ ifname: string }>;
      try {
        links = JSON.parse(r.stdout) as Array<{ ifname: string }>;
      } catch {
        continue;
      }
      if (r.exitCode !== 0 || links.some((l) => l.ifname !== 'lo')) continue;
      await sh('ip', ['netns', 'del', name], { allowFail: true });
      console.log(`containerd teardown: removed empty netns ${name} left by a failed sandbox`);
    }
    // containerd 1.6 shims put their sockets under /run/containerd/s whatever the config says:
    // remove those directories when this instance created them and they are empty now
    for (const p of [...this.createdRunDirs].reverse()) {
      try {
        rmdirSync(p);
      } catch {
        /* not empty: another containerd uses it */
      }
    }
  }
}

const SHIM_RUN_DIRS = ['/run/containerd', '/run/containerd/s'];

const listNetns = (): string[] => (existsSync('/run/netns') ? readdirSync('/run/netns') : []);

/** PIDs of containerd shims started by the instance listening on `socket`. */
export function shimsOf(socket: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (cmd[0]?.includes('containerd-shim') && cmd.includes(socket)) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** A private containerd with CRI; everything is removed on cleanup. */
export async function makeContainerd(
  cleanup: Cleanup,
  tag: string,
  plan: PluginPlan,
  conflist: Record<string, unknown>,
): Promise<Containerd> {
  const dir = makeTempTree(cleanup, `cnits-ctrd-${tag}`);
  const c = new Containerd(dir, tag);
  cleanup.add(() => c.teardown());
  await c.start(plan, conflist);
  return c;
}
