/**
 * static IPAM: hands out the addresses, routes and DNS the config (or the runtime, through
 * runtimeConfig.ips, args.cni.ips or CNI_ARGS IP/GATEWAY) names. Nothing is stored, so DEL,
 * GC and STATUS have nothing to do; CHECK compares prevResult with what ADD would return.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { definePlugin } from '../../shared/cni/plugin.ts';
import schema from '../../conf/schemas/static.schema.json' with { type: 'json' };
import { checkAgainst, requestedMac, resolveAddresses, staticResult, validateStatic, type StaticNetConf } from './config.ts';

export default definePlugin<StaticNetConf>({
  name: 'static',
  about: 'static IPAM: fixed addresses, routes and DNS from the config or the runtime (ips, CNI_ARGS IP/GATEWAY)',
  schema,
  validateConfig(config, req) {
    // DEL releases nothing, so it never fails on semantics (the schema still applies).
    if (req.env.command !== 'DEL') validateStatic(config);
  },
  async add(req) {
    const mac = requestedMac(req.config, req.env.args);
    if (mac) req.log.debug(`MAC ${mac.mac} requested via ${mac.source}: left to the interface plugin (IPAM results carry no interfaces)`);
    return staticResult(req.config, req.env.args, req.version);
  },
  async del() {
    // Nothing was reserved.
  },
  async check(req) {
    const expected = resolveAddresses(req.config, req.env.args, req.version);
    if (!req.prevResult) return;
    const problems = checkAgainst(expected, req.prevResult);
    if (problems.length) {
      throw new CniError(
        ErrorCode.CheckMismatch,
        `static: prevResult does not match the configured addresses: ${problems[0]}`,
        problems.join('; '),
      );
    }
  },
  async gc() {},
  async status() {},
});
