/**
 * `npm run bench`: throughput, latency, the seed's one-at-a-time client, and recovery from a killed
 * worker, each the median of several runs with min and max, held against the targets of issue 5.
 * It starts its own cluster (a free port, a temp data dir) unless --port names a running one.
 * docs/performance.md has the numbers from the reference machine and what bounds each.
 */
import os from 'node:os';
import { z } from 'zod';
import { ArgsError, parseArgs } from '../shared/args';
import { describeOptionIssues, flagOption, HostSchema, intOption, optionSpec, PortSchema } from '../shared/options';
import { externalTarget, startOwnCluster } from './cluster';
import { printCpu, printFigures } from './report';
import { PHASES, runBench, type BenchPlan } from './runner';
import { EXIT_USAGE } from '../client/command-helpers';
import type { Output } from '../client/output';

export const BENCH_USAGE = `Usage: npm run bench -- [options]   (or node dist/bench/main.js [options])

Starts a cluster on a free port with a temp data dir (or uses --host/--port), then measures:
saturation (tasks/s; with its own cluster also a second one with --dispatch least-loaded, in
turns), latency at 10% and 50% of that rate (open loop), one task at a time (the seed's
client), and kill -9 of a worker (own cluster only). Text tasks throughout.

Options:
  --runs <n>          runs per figure; each figure is their median     (5; --quick: 3)
  --tasks <n>         tasks per saturation run                        (150000; --quick: 30000)
  --connections <n>   client connections                              (4)
  --window <n>        tasks in flight per connection at saturation     (256)
  --duration-ms <n>   length of each latency and one-at-a-time run     (2000; --quick: 1000)
  --phases <list>     some of saturation,least-loaded,latency,serial,recovery,reload,http (all)
  --workers <n>       workers of the cluster the bench starts          (3)
  --host <addr>       use a running cluster instead of starting one   (127.0.0.1)
  --port <n>          its port
  --token <secret>    its token, if it has one
  --quick             fewer, shorter runs (about 30 s)
  --json              print one JSON object with every figure instead of tables
  --help              this text`;

const BenchArgsSchema = z.strictObject({
  runs: intOption(1, 50).optional(),
  tasks: intOption(100, 10_000_000).optional(),
  connections: intOption(1, 256).default(4),
  window: intOption(1, 4096).default(256),
  durationMs: intOption(100, 60_000).optional(),
  phases: z
    .string()
    .transform((text) => text.split(',').map((name) => name.trim()))
    .pipe(z.array(z.enum(PHASES)).min(1))
    .optional(),
  workers: intOption(1, 64).default(3),
  host: HostSchema.optional(),
  port: PortSchema.optional(),
  token: z.string().min(1).max(1024).optional(),
  quick: flagOption.default(false),
  json: flagOption.default(false),
  help: flagOption.default(false),
});

type BenchArgs = z.infer<typeof BenchArgsSchema>;

export async function benchCommand(argv: string[], output: Output): Promise<number> {
  let args: BenchArgs;
  try {
    const parsed = parseArgs(argv, optionSpec(BenchArgsSchema));
    if (parsed.positionals.length > 0) throw new ArgsError(`unexpected argument "${parsed.positionals[0]}"`);
    const result = BenchArgsSchema.safeParse(parsed.options);
    if (!result.success) throw new ArgsError(describeOptionIssues(result.error.issues));
    args = result.data;
  } catch (error) {
    if (!(error instanceof ArgsError)) throw error;
    output.error(`ronda bench: ${error.message}\nrun "npm run bench -- --help" for the options`);
    return EXIT_USAGE;
  }
  if (args.help) {
    output.line(BENCH_USAGE);
    return 0;
  }
  const plan: BenchPlan = {
    runs: args.runs ?? (args.quick ? 3 : 5),
    tasks: args.tasks ?? (args.quick ? 30_000 : 150_000),
    connections: args.connections,
    window: args.window,
    durationMs: args.durationMs ?? (args.quick ? 1_000 : 2_000),
    phases: new Set(args.phases ?? PHASES),
  };
  // Output.progress draws on a terminal only; a piped run prints nothing but the result.
  const progress = (label: string, done: number, total: number): void => {
    if (!args.json) output.progress(Math.floor(done), total, label);
  };

  progress('starting the cluster', 0, 1);
  const own = args.port === undefined;
  const target = own ? await startOwnCluster(args.workers) : externalTarget(args.host ?? '127.0.0.1', args.port as number);
  try {
    const contender = own ? () => startOwnCluster(args.workers, ['--dispatch', 'least-loaded']) : undefined;
    const report = await runBench(target, { host: target.host, port: target.port, token: args.token }, plan, progress, contender);
    output.clearProgress();
    if (args.json) {
      output.line(JSON.stringify(report.json));
    } else {
      const where = own ? `own cluster of ${args.workers} workers` : `cluster at ${target.host}:${target.port}`;
      output.line(`ronda bench: ${where}, ${os.cpus().length} CPUs, Node ${process.version}, text tasks`);
      output.line();
      printFigures(output, report.figures, plan.runs);
      output.line();
      printCpu(output, report.cpu);
    }
    if (report.floorError !== undefined) output.error(`ronda bench: the bare chain was left out: ${report.floorError}`);
    if (report.failed > 0) output.error(`${report.failed} task(s) failed; the first: ${report.firstFailure}`);
    return report.failed > 0 ? 1 : 0;
  } finally {
    output.clearProgress();
    await target.stop();
  }
}
