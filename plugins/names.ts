/** Every executable name the multi-call binary answers to (hard links in dist/bin). */
export const PLUGIN_NAMES = ['bridge', 'portmap', 'loopback', 'host-device', 'overlay', 'host-local', 'static', 'endpoint'] as const;
export const TOOL_NAMES = ['cnitool', 'cnictl'] as const;
export const MULTICALL_NAME = 'cni-ts';
