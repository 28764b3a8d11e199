/**
 * podman with its CNI backend and everything private: containers.conf (CONTAINERS_CONF),
 * storage.conf (CONTAINERS_STORAGE_CONF, vfs driver, own graphroot/runroot), network config dir
 * and plugin dir under one temp tree; containers run from a busybox root filesystem (--rootfs),
 * so no image store, registry or shared blob cache is used. The system's own podman
 * configuration is never touched.
 */
import { execa } from 'execa';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type Cleanup } from '../netns.ts';
import { makeTempTree } from './common.ts';
import { buildRootfs } from './image.ts';
import { populatePluginDir, type PluginPlan } from './plugins.ts';

export interface PodmanOut {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class Podman {
  readonly netDir: string;
  readonly binDir: string;
  /** `podman run` arguments selecting the busybox root filesystem (--rootfs: no image store, no registry, no blob cache) */
  readonly image: string[];
  private readonly rootfs: string;
  private readonly env: Record<string, string>;

  constructor(readonly dir: string) {
    this.netDir = path.join(dir, 'net.d');
    this.binDir = path.join(dir, 'cni-bin');
    this.rootfs = path.join(dir, 'rootfs');
    this.image = ['--rootfs', this.rootfs];
    this.env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: dir,
      CONTAINERS_CONF: path.join(dir, 'containers.conf'),
      CONTAINERS_STORAGE_CONF: path.join(dir, 'storage.conf'),
      CONTAINERS_REGISTRIES_CONF: path.join(dir, 'registries.conf'),
      TMPDIR: path.join(dir, 'tmp'),
    };
  }

  /** Write the private configuration, the plugin dir and the busybox root filesystem. */
  async setup(plan: PluginPlan): Promise<void> {
    const d = this.dir;
    for (const s of ['net.d', 'tmp', 'graph', 'run']) mkdirSync(path.join(d, s), { recursive: true });
    populatePluginDir(this.binDir, plan);
    writeFileSync(
      this.env.CONTAINERS_CONF,
      [
        '[containers]',
        'default_ulimits = ["nofile=10000:10000", "nproc=1000:1000"]',
        'log_driver = "k8s-file"',
        'netns = "bridge"',
        '[network]',
        'network_backend = "cni"',
        `network_config_dir = "${this.netDir}"`,
        `cni_plugin_dirs = ["${this.binDir}"]`,
        '[engine]',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        `events_logfile_path = "${path.join(d, 'events.log')}"`,
        `tmp_dir = "${path.join(d, 'tmp')}"`,
        `volume_path = "${path.join(d, 'volumes')}"`,
        'runtime = "runc"',
        'stop_timeout = 1',
        '',
      ].join('\n'),
    );
    writeFileSync(
      this.env.CONTAINERS_STORAGE_CONF,
      ['[storage]', 'driver = "vfs"', `runroot = "${path.join(d, 'run')}"`, `graphroot = "${path.join(d, 'graph')}"`, ''].join('\n'),
    );
    writeFileSync(this.env.CONTAINERS_REGISTRIES_CONF, 'unqualified-search-registries = []\n');
    buildRootfs(this.rootfs);
  }

  async run(args: string[]): Promise<PodmanOut> {
    // runc's state under this tree too (its default is the shared /run/runc)
    const global = ['--runtime-flag', `root=${path.join(this.dir, 'runc')}`];
    const r = await execa('podman', [...global, ...args], { env: this.env, extendEnv: false, reject: false });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout).trim(), stderr: String(r.stderr).trim() };
  }

  async ok(args: string[]): Promise<string> {
    const r = await this.run(args);
    if (r.exitCode !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
    return r.stdout;
  }

  /** Write a conflist into the private network dir (podman names the network after `name`). */
  writeNetwork(conflist: { name: string }): string {
    const file = path.join(this.netDir, `${conflist.name}.conflist`);
    writeFileSync(file, JSON.stringify(conflist, null, 2));
    return file;
  }

  /** Address podman reports for a container on a network. */
  async containerIp(id: string, network: string): Promise<string> {
    const j = JSON.parse(await this.ok(['inspect', '--format', '{{json .NetworkSettings.Networks}}', id])) as Record<
      string,
      { IPAddress?: string }
    >;
    return j[network]?.IPAddress ?? '';
  }

  /** Network namespace path of a running container. */
  async netnsPath(id: string): Promise<string> {
    return (await this.ok(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', id])).trim();
  }

  /** Remove every container of this private store, then the temp tree (via cleanup). */
  async teardown(): Promise<void> {
    await this.run(['rm', '-af', '-t', '0']);
  }
}

/** '' when this host's podman can drive CNI plugins, else why not. */
export async function podmanMissing(): Promise<string> {
  const r = await execa('podman', ['--version'], { reject: false });
  if (r.exitCode !== 0) return 'podman is not installed (apt-get install podman)';
  const major = Number(/version (\d+)/.exec(String(r.stdout))?.[1] ?? 0);
  if (major >= 5) return `${String(r.stdout).trim()} has no CNI backend (podman 4.x needed)`;
  return inChroot()
    ? "running in a chroot: runc cannot pivot_root into a container root there (the container would see the host's root filesystem instead of its busybox image)"
    : '';
}

/**
 * True inside a chroot (as in ../shared/tools/fresh-debian): the root of one of our ancestor
 * processes, the ones that ran chroot(8), is not our "/". (PID 1's root is often not readable.)
 */
function inChroot(): boolean {
  const ours = statSync('/');
  let pid = process.pid;
  for (let depth = 0; depth < 64 && pid > 1; depth++) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (pid <= 1) return false;
      const root = statSync(`/proc/${pid}/root/`);
      if (root.dev !== ours.dev || root.ino !== ours.ino) return true;
    } catch {
      return false; // not allowed to look: assume not
    }
  }
  return false;
}

/** A private podman; all of it is removed on cleanup. */
export async function makePodman(cleanup: Cleanup, tag: string, plan: PluginPlan): Promise<Podman> {
  const dir = makeTempTree(cleanup, `cnits-podman-${tag}`);
  const p = new Podman(dir);
  cleanup.add(() => p.teardown());
  await p.setup(plan);
  return p;
}
