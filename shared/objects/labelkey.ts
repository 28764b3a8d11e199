/**
 * Label keys as the endpoint plugin's `args.cni.labels` and the Docker driver's options accept
 * them: `[prefix/]name`, prefix dotted DNS labels up to 253 characters, name up to 63 of
 * [A-Za-z0-9-_.]. Shared by the plugin and the agent (the agent imports no plugin).
 */
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function validLabelKey(k: string): boolean {
  const slash = k.lastIndexOf('/');
  const name = slash < 0 ? k : k.slice(slash + 1);
  const prefix = slash < 0 ? undefined : k.slice(0, slash);
  if (prefix !== undefined && (prefix.length > 253 || !LABEL_PREFIX.test(prefix))) return false;
  return name.length <= 63 && LABEL_NAME.test(name);
}
