/**
 * `encryption`: only "none" is implemented. Asking for WireGuard or IPsec fails with code 101
 * naming the kernel feature, probed in a throwaway network namespace (`unshare --net`) so the
 * probe never touches the host's devices or xfrm state.
 */
import { CniError, ErrorCode } from '../cni/errors.ts';
import { probeInFreshNetns } from '../kernel/feature.ts';

const PROBES: Record<string, { feature: string; argv: string[] }> = {
  wireguard: { feature: 'WireGuard (link type "wireguard")', argv: ['ip', 'link', 'add', 'wgprobe0', 'type', 'wireguard'] },
  ipsec: {
    feature: 'IPsec ESP (xfrm "proto esp")',
    argv: [
      'ip',
      'xfrm',
      'state',
      'add',
      'src',
      '192.0.2.1',
      'dst',
      '192.0.2.2',
      'proto',
      'esp',
      'spi',
      '0x100',
      'enc',
      'cbc(aes)',
      '0x00112233445566778899aabbccddeeff',
    ],
  },
};

export async function checkEncryption(mode: string): Promise<void> {
  if (mode === 'none') return;
  const probe = PROBES[mode];
  if (!probe)
    throw new CniError(
      ErrorCode.InvalidConfig,
      `invalid network config: encryption: must be one of "none", "wireguard", "ipsec"`,
      'field "encryption"',
    );
  const r = await probeInFreshNetns(probe.argv);
  if (r.exitCode !== 0) {
    throw new CniError(
      ErrorCode.KernelFeatureMissing,
      `encryption "${mode}" needs ${probe.feature}, which this kernel lacks`,
      `probe "${probe.argv.join(' ')}" failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`,
    );
  }
  throw new CniError(
    ErrorCode.UnsupportedField,
    `encryption "${mode}" is not implemented by this plugin yet`,
    `the kernel has ${probe.feature}; only "none" is supported`,
  );
}
