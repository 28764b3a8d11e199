/**
 * Container images built locally from busybox-static (no registry): a root filesystem with
 * /bin/busybox and applet symlinks, packed as a plain tar (for `podman import`) or as an OCI
 * image layout tar (for `ctr images import`).
 */
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sh } from '../netns.ts';

export const BUSYBOX = '/bin/busybox';
const APPLETS = [
  'sh',
  'sleep',
  'httpd',
  'ping',
  'ip',
  'nc',
  'wget',
  'cat',
  'ls',
  'echo',
  'hostname',
  'ifconfig',
  'true',
  'mkdir',
  'kill',
  'nslookup',
];

/** Write a busybox root filesystem under `dir` with a web root /www holding index.html = `page`. */
export function buildRootfs(dir: string, page = 'cni-ts\n'): void {
  for (const d of ['bin', 'etc', 'www', 'tmp', 'proc', 'sys', 'dev', 'run']) mkdirSync(path.join(dir, d), { recursive: true });
  copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  for (const a of APPLETS) symlinkSync('busybox', path.join(dir, 'bin', a));
  writeFileSync(path.join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  writeFileSync(path.join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  writeFileSync(path.join(dir, 'www', 'index.html'), page);
}

/** Plain tar of a root filesystem (numeric root ownership). */
export async function tarRootfs(dir: string, out: string): Promise<void> {
  await sh('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', dir, '-cf', out, '.']);
}

const sha256 = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const goArch = (): string => ({ x64: 'amd64', arm64: 'arm64' })[process.arch as 'x64' | 'arm64'] ?? process.arch;

/**
 * An OCI image layout (one uncompressed layer) packed as a tar at `out`, named `ref`
 * (e.g. docker.io/library/cnits-pause:t1a2b3c) through the `io.containerd.image.name` annotation.
 */
export async function ociImageTar(rootfsDir: string, workDir: string, out: string, ref: string, entrypoint: string[]): Promise<void> {
  const layout = path.join(workDir, 'oci');
  const blobs = path.join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const layerTar = path.join(workDir, 'layer.tar');
  await tarRootfs(rootfsDir, layerTar);
  const layer = readFileSync(layerTar);
  const put = (b: Buffer | string): { digest: string; size: number } => {
    const digest = sha256(b);
    writeFileSync(path.join(blobs, digest.slice(7)), b);
    return { digest, size: Buffer.byteLength(b) };
  };
  const layerDesc = put(layer);
  const config = JSON.stringify({
    architecture: goArch(),
    os: 'linux',
    config: { Entrypoint: entrypoint, Env: ['PATH=/bin'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [layerDesc.digest] },
  });
  const configDesc = put(config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...configDesc },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layerDesc }],
  });
  const manifestDesc = put(manifest);
  const tag = ref.slice(ref.lastIndexOf(':') + 1);
  writeFileSync(
    path.join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifestDesc,
          platform: { architecture: goArch(), os: 'linux' },
          annotations: { 'io.containerd.image.name': ref, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await sh('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', layout, '-cf', out, 'oci-layout', 'index.json', 'blobs']);
  if (statSync(out).size < layer.length) throw new Error('OCI image tar is shorter than its layer');
}
