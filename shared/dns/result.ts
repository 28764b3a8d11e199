/**
 * The `dns` of a CNI result for a container on one of our networks, so runtimes that write
 * resolv.conf from the result (containerd, cnitool) point it at the node's DNS server with the
 * Kubernetes search list: `<ns>.svc.<domain> svc.<domain> <domain>`, `options ndots:5`.
 * Pure and self-contained (no imports: the `endpoint` plugin's bundle stays small); the plugin
 * calls it with the network's gateway (where the agent listens).
 */

export interface ResultDns {
  nameservers: string[];
  domain?: string;
  search: string[];
  options: string[];
}

export function resultDns(namespace: string, clusterDomain: string | undefined, nameserver: string | string[]): ResultDns {
  const norm = (n: string): string => n.toLowerCase().replace(/\.$/, '');
  const domain = norm(clusterDomain || 'cluster.local');
  const ns = norm(namespace || 'default');
  return {
    nameservers: (Array.isArray(nameserver) ? nameserver : [nameserver]).map((s) => s.replace(/\/\d+$/, '')),
    search: [`${ns}.svc.${domain}`, `svc.${domain}`, domain],
    options: ['ndots:5'],
  };
}
