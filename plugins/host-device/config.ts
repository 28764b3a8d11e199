/**
 * host-device configuration: which host interface to hand to the container. Pure functions.
 *
 * Selectors (exactly one): `device` (name), `hwaddr` (MAC), `kernelpath` (a sysfs device
 * directory under /sys/devices/) or `pciBusID` (PCI address). `runtimeConfig.deviceID` (the
 * `deviceID` capability, e.g. from an SR-IOV device plugin) replaces the static selector: a
 * PCI address, or an interface name.
 */
import { validIfname } from '../../shared/cni/env.ts';
import { invalidConfig } from '../../shared/cni/errors.ts';
import type { NetConfBase } from '../../shared/cni/types.ts';

export interface HostDeviceConf extends NetConfBase {
  device?: string;
  hwaddr?: string;
  kernelpath?: string;
  pciBusID?: string;
  /** Where attachment records are kept (default /var/lib/cni/host-device). */
  dataDir?: string;
  runtimeConfig?: { deviceID?: string; [k: string]: unknown };
}

export const DEFAULT_DATA_DIR = '/var/lib/cni/host-device';

export type Selector =
  | { by: 'device'; field: string; name: string }
  | { by: 'hwaddr'; field: string; mac: string }
  | { by: 'kernelpath'; field: string; path: string }
  | { by: 'pciBusID'; field: string; pci: string };

const PCI_RE = /^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$/;

/** "00:1f.6" -> "0000:00:1f.6", lower case, the form sysfs uses. */
export function normalizePci(addr: string): string {
  const a = addr.toLowerCase();
  return a.length === 7 ? `0000:${a}` : a;
}

export const normalizeMac = (mac: string): string => mac.toLowerCase();

/** The one selector of a config, or code 7 naming the field. */
export function selectorOf(conf: HostDeviceConf): Selector {
  const id = conf.runtimeConfig?.deviceID;
  if (id !== undefined && id !== '') {
    if (PCI_RE.test(id)) return { by: 'pciBusID', field: 'runtimeConfig.deviceID', pci: normalizePci(id) };
    if (validIfname(id)) return { by: 'device', field: 'runtimeConfig.deviceID', name: id };
    throw invalidConfig('runtimeConfig.deviceID', `"${id}" is neither a PCI address nor an interface name`);
  }
  const given = (['device', 'hwaddr', 'kernelpath', 'pciBusID'] as const).filter((k) => conf[k] !== undefined && conf[k] !== '');
  if (given.length === 0)
    throw invalidConfig('device', 'specify exactly one of "device", "hwaddr", "kernelpath" or "pciBusID" (or runtimeConfig.deviceID)');
  if (given.length > 1) throw invalidConfig(given[1], `only one selector may be given, found ${given.map((g) => `"${g}"`).join(' and ')}`);
  const k = given[0];
  switch (k) {
    case 'device':
      return { by: 'device', field: k, name: conf.device as string };
    case 'hwaddr':
      return { by: 'hwaddr', field: k, mac: normalizeMac(conf.hwaddr as string) };
    case 'kernelpath': {
      const p = conf.kernelpath as string;
      if (!p.startsWith('/sys/devices/') || p.split('/').includes('..')) {
        throw invalidConfig('kernelpath', `"${p}" must be an absolute path under /sys/devices/`);
      }
      return { by: 'kernelpath', field: k, path: p.replace(/\/+$/, '') };
    }
    case 'pciBusID':
      return { by: 'pciBusID', field: k, pci: normalizePci(conf.pciBusID as string) };
  }
}

export function describeSelector(s: Selector): string {
  switch (s.by) {
    case 'device':
      return `device "${s.name}"`;
    case 'hwaddr':
      return `device with MAC ${s.mac}`;
    case 'kernelpath':
      return `device at ${s.path}`;
    case 'pciBusID':
      return `PCI device ${s.pci}`;
  }
}

export const ipamType = (conf: HostDeviceConf): string | undefined => (conf.ipam?.type ? conf.ipam.type : undefined);
