/**
 * cnictl: the operator CLI of the cluster store (docs/cnictl.md). It reads and writes the store
 * the host's agent config names (`--config FILE`, `$CNI_TS_CONFIG`, /etc/cni-ts/agent.json);
 * live data (metrics, traces) comes from the agent over its socket.
 * Exit codes: 0 ok, 1 error, 2 usage.
 */
import { CniError, ErrorCode } from '../../shared/cni/errors.ts';
import { configPathFrom } from '../../shared/agentconfig.ts';
import { StoreUnavailableError } from '../../shared/store/types.ts';
import { CliError, makeCtx, UsageError } from './common.ts';
import { VERBS } from './verbs.ts';

function mainUsage(): string {
  const w = Math.max(...Object.keys(VERBS).map((v) => v.length)) + 2;
  return `cnictl: read and change the cluster objects of cni-ts (policies, endpoints, namespaces, services)

usage: cnictl [--config FILE] VERB [ARGS...]
${Object.entries(VERBS)
  .map(([v, d]) => `  ${v.padEnd(w)}${d.summary}`)
  .join('\n')}

  --config FILE   the agent config naming the store (default $CNI_TS_CONFIG or /etc/cni-ts/agent.json)
  cnictl VERB --help for a verb's flags
`;
}

/** Take `--config FILE` / `--config=FILE` out of argv, wherever it is. */
function takeConfig(argv: string[]): { rest: string[]; config: string | undefined } {
  const rest: string[] = [];
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a === '--config') {
      config = argv[i + 1];
      if (config === undefined) throw new UsageError('--config needs a FILE');
      i++;
    } else if (a.startsWith('--config=')) config = a.slice('--config='.length);
    else rest.push(a);
  }
  return { rest, config };
}

export async function main(argv: string[]): Promise<number> {
  const stderr = (s: string): void => void process.stderr.write(s);
  let usage = mainUsage();
  let ctx: ReturnType<typeof makeCtx> | undefined;
  try {
    const { rest, config } = takeConfig(argv);
    const [verb, ...args] = rest;
    if (!verb || verb === '-h' || verb === '--help' || verb === 'help') {
      const sub = verb === 'help' ? args[0] : undefined;
      if (sub && VERBS[sub]) process.stdout.write((await VERBS[sub].load()).usage);
      else (verb ? process.stdout : process.stderr).write(usage);
      return verb ? 0 : 2;
    }
    const entry = VERBS[verb];
    if (!entry) throw new UsageError(`unknown verb ${JSON.stringify(verb)}`);
    const mod = await entry.load();
    usage = mod.usage;
    if (args.includes('-h') || args.includes('--help')) {
      process.stdout.write(mod.usage);
      return 0;
    }
    ctx = makeCtx(config ?? configPathFrom([], process.env));
    return await mod.run(ctx, args);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
      stderr(`error: ${(e as Error).message}\n${usage}`);
      return 2;
    }
    if (e instanceof StoreUnavailableError) stderr(`error: store unavailable: ${e.message}\n`);
    else if (e instanceof CniError)
      stderr(`error: ${e.message}${e.details && e.code !== ErrorCode.InvalidConfig ? `: ${e.details}` : ''}\n`);
    else if (e instanceof CliError) stderr(`error: ${e.message}\n`);
    else stderr(`error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    await ctx?.close().catch(() => undefined);
  }
}
