/**
 * Runs the benchmark's phases in order against one cluster and gathers every figure: a warm-up,
 * saturation, latency at fractions of the measured saturation rate, the seed's one-at-a-time
 * client, and (on a cluster the bench started) recovery from kill -9 of a worker.
 */
import os from 'node:os';
import type { BenchTarget } from './cluster';
import { Floor } from './floor';
import { httpSaturate, subscribeConsole } from './http-load';
import { closeAll, connectAll, paced, saturate, serial, withDeadline, type Endpoint } from './load';
import { memoryOf, meterPhase, type PhaseCost, type Watched } from './proc';
import { measureRecovery } from './recovery';
import { spread, targetMet, type CpuByPhase, type Figure } from './report';
import type { RondaConnection } from '../client/ronda-connection';

export interface BenchPlan {
  runs: number;
  /** Tasks per saturation run. */
  tasks: number;
  connections: number;
  /** Tasks in flight per connection at saturation. */
  window: number;
  /** Length of each latency run and each one-at-a-time run. */
  durationMs: number;
  /** Phases to run; latency needs saturation (its loads are fractions of the saturation rate). */
  phases: ReadonlySet<Phase>;
}

export const PHASES = ['saturation', 'least-loaded', 'latency', 'tail', 'serial', 'recovery', 'reload', 'http'] as const;
export type Phase = (typeof PHASES)[number];

/** Fractions of the measured saturation rate at which latency is measured. */
export const LATENCY_LOADS = [0.1, 0.5] as const;
/** Connections that carry the load while a worker is killed. */
const RECOVERY_CONNECTIONS = 2;
/**
 * One task at a time runs other code than a saturating load (lone tasks, lone commits): both the
 * cluster and the bare chain get this long of it before the first measured run.
 */
const SERIAL_WARMUP_MS = 1_000;
/** The warm-up's share of a saturation run: enough for the JIT, not enough to matter. */
const WARMUP_SHARE = 0.2;

/** The paced load a rolling reload runs under, without a saturation figure to take 10% of. */
const RELOAD_RATE_PER_S = 2_000;
/** A reload run lasts at least this (a reload of three workers takes about a second), reload at a quarter. */
const RELOAD_RUN_MS = 4_000;

/** POST /api/tasks in flight at once at HTTP saturation, each on its own kept-alive socket. */
const HTTP_IN_FLIGHT = 64;

/** Longest any single run may take: a cluster that stops answering ends the bench, not hangs it. */
const RUN_LIMIT_MS = 180_000;

/** Issue 5's targets, for a 2-core machine. */
export const TARGETS = {
  saturationPerS: 40_000,
  p50At10Ms: 1.5,
  p99At10Ms: 10,
  serialPerS: 5_000,
  replacementReadyMs: 300,
  primaryRssMb: 150,
} as const;

export interface BenchReport {
  figures: Figure[];
  cpu: CpuByPhase;
  failed: number;
  firstFailure: string | undefined;
  /** Why the bare chain has no figures, if it failed: Ronda's own figures are kept regardless. */
  floorError: string | undefined;
  json: Record<string, unknown>;
}

/** Tells a person what runs now, and how far the phase is (`done` of `total` runs). */
type Progress = (label: string, done: number, total: number) => void;

/**
 * @param contender starts a second cluster like the bench's own but with `--dispatch
 *   least-loaded`; its saturation runs take turns with the first one's, so that both see the same
 *   moments of a noisy machine. Only for a cluster the bench started.
 */
export async function runBench(
  target: BenchTarget,
  endpoint: Endpoint,
  plan: BenchPlan,
  progress: Progress,
  contender?: () => Promise<BenchTarget>,
): Promise<BenchReport> {
  const startedAt = new Date().toISOString();
  const connections = await connectAll(endpoint, plan.connections);
  const control = connections[0] as RondaConnection;
  const costs: Record<string, PhaseCost[]> = {};
  let failed = 0;
  let firstFailure: string | undefined;
  const noteFailures = (result: { failed: number; firstFailure: string | undefined }): void => {
    failed += result.failed;
    firstFailure ??= result.firstFailure;
  };
  /** Runs `body` with the processes' CPU and the primary's memory measured around it. */
  const metered = async <T>(phase: string, body: () => Promise<T>): Promise<T> => {
    const stop = meterPhase(await watched(target, control), target.primaryPid);
    const result = await bounded(phase, body());
    (costs[phase] ??= []).push(stop());
    return result;
  };

  try {
    // Every phase starts warm: a cold JIT in the primary and the workers halves the first figures.
    progress('warming up', 0, 1);
    noteFailures(await bounded('the warm-up', saturate(connections, Math.round(plan.tasks * WARMUP_SHARE), plan.window)));

    const saturation: number[] = [];
    const saturationTasks: number[] = [];
    const leastLoaded: number[] = [];
    const saturationRuns = plan.phases.has('saturation') || plan.phases.has('latency') ? plan.runs : 0;
    const second = saturationRuns > 0 && plan.phases.has('least-loaded') ? await startContender(contender, endpoint, plan) : undefined;
    try {
      if (second !== undefined) {
        noteFailures(await bounded('the warm-up', saturate(second.connections, Math.round(plan.tasks * WARMUP_SHARE), plan.window)));
      }
      for (let run = 1; run <= saturationRuns; run += 1) {
        const label = `saturation run ${run}/${plan.runs}`;
        progress(label, run - 1, plan.runs);
        const result = await metered('saturation', () =>
          saturate(connections, plan.tasks, plan.window, (done) => progress(`${label}: ${done} tasks`, run - 1 + done / plan.tasks, plan.runs)),
        );
        noteFailures(result);
        saturation.push(result.tasksPerS);
        saturationTasks.push(result.tasks);
        if (second !== undefined) {
          progress(`saturation, least-loaded, run ${run}/${plan.runs}`, run - 0.5, plan.runs);
          const other = await bounded('saturation, least-loaded', saturate(second.connections, plan.tasks, plan.window));
          noteFailures(other);
          leastLoaded.push(other.tasksPerS);
        }
      }
    } finally {
      if (second !== undefined) {
        await closeAll(second.connections);
        await second.target.stop();
      }
    }
    const saturationSpread = spread(saturation);

    const latencyFigures: Figure[] = [];
    const latencyJson: Record<string, unknown>[] = [];
    const saturationRate = saturationSpread?.median ?? 0;
    for (const load of plan.phases.has('latency') && saturationRate > 0 ? LATENCY_LOADS : []) {
      const rate = Math.max(1, Math.round(saturationRate * load));
      const name = `${Math.round(load * 100)}%`;
      const runs: Awaited<ReturnType<typeof paced>>[] = [];
      for (let run = 1; run <= plan.runs; run += 1) {
        progress(`latency at ${name} load (${rate} tasks/s), run ${run}/${plan.runs}`, run - 1, plan.runs);
        const result = await metered(`latency ${name}`, () => paced(connections, rate, plan.durationMs));
        noteFailures(result);
        runs.push(result);
      }
      const at10 = load === 0.1;
      const figure = (key: 'p50' | 'p90' | 'p99' | 'max', bound?: number): Figure => ({
        key: `latency${Math.round(load * 100)}.${key}`,
        label: `latency at ${name} load, ${key}`,
        unit: 'ms',
        value: spread(runs.map((result) => result[key])),
        ...(bound === undefined ? {} : { target: { bound: 'max' as const, value: bound } }),
      });
      latencyFigures.push(
        figure('p50', at10 ? TARGETS.p50At10Ms : undefined),
        figure('p90'),
        figure('p99', at10 ? TARGETS.p99At10Ms : undefined),
        figure('max'),
      );
      latencyJson.push({
        load,
        offeredPerS: rate,
        achievedPerS: spread(runs.map((result) => result.achievedPerS)),
        maxSendLagMs: spread(runs.map((result) => result.maxSendLagMs)),
      });
    }

    // The tail against the bare chain's: the same open-loop load at 10% of saturation on one
    // connection, through Ronda and through the bare chain, in turns.
    const tailRuns: Awaited<ReturnType<typeof paced>>[] = [];
    let tailFloor: Floor | undefined;
    if (plan.phases.has('tail') && target.primaryPid !== undefined) {
      const rate = saturationRate > 0 ? Math.max(1, Math.round(saturationRate * 0.1)) : RELOAD_RATE_PER_S;
      tailFloor = await Floor.start((await control.stats()).workers.length);
      try {
        await bounded('the warm-up', paced([control], rate, SERIAL_WARMUP_MS));
        await tailFloor.paced(rate, SERIAL_WARMUP_MS);
        tailFloor.pacedRuns.length = 0;
        for (let run = 1; run <= plan.runs; run += 1) {
          progress(`the tail at ${rate} tasks/s, Ronda and the bare chain, run ${run}/${plan.runs}`, run - 1, plan.runs);
          const result = await metered('tail', () => paced([control], rate, plan.durationMs));
          noteFailures(result);
          tailRuns.push(result);
          await tailFloor.paced(rate, plan.durationMs);
        }
      } finally {
        await tailFloor.stop();
      }
    }
    const tailFloorRuns = tailFloor?.pacedRuns ?? [];

    const serialRuns: Awaited<ReturnType<typeof serial>>[] = [];
    let floor: Floor | undefined;
    if (plan.phases.has('serial')) {
      // The bare chain runs on this machine: beside a cluster elsewhere it would compare nothing.
      if (target.primaryPid !== undefined) floor = await Floor.start((await control.stats()).workers.length);
      try {
        noteFailures(await bounded('the warm-up', serial(control, SERIAL_WARMUP_MS)));
        await floor?.run(SERIAL_WARMUP_MS, false);
        // Turn about, so that both see the same moments of a noisy machine.
        for (let run = 1; run <= plan.runs; run += 1) {
          progress(`one task at a time, run ${run}/${plan.runs}`, run - 1, plan.runs);
          const result = await metered('one at a time', () => serial(control, plan.durationMs));
          noteFailures(result);
          serialRuns.push(result);
          await floor?.run(plan.durationMs);
        }
      } finally {
        await floor?.stop();
      }
    }
    const floorRuns = floor?.runs ?? [];
    const floorError = floor?.error;

    const recoveryRuns: Awaited<ReturnType<typeof measureRecovery>>[] = [];
    if (target.primaryPid !== undefined && plan.phases.has('recovery')) {
      const recoveryConnections = connections.slice(0, RECOVERY_CONNECTIONS);
      for (let run = 1; run <= plan.runs; run += 1) {
        progress(`kill -9 of a worker, run ${run}/${plan.runs}`, run - 1, plan.runs);
        const result = await bounded('recovery', measureRecovery(recoveryConnections));
        noteFailures(result);
        recoveryRuns.push(result);
      }
    }

    // A rolling reload under a paced load (10% of saturation), in turns with the same load without
    // one: what a reload costs the tasks that flow through it.
    const reloadRuns: { ms: number; p99: number; max: number; baselineP99: number; baselineMax: number }[] = [];
    if (target.primaryPid !== undefined && plan.phases.has('reload')) {
      const rate = saturationRate > 0 ? Math.max(1, Math.round(saturationRate * 0.1)) : RELOAD_RATE_PER_S;
      const runMs = Math.max(plan.durationMs, RELOAD_RUN_MS);
      for (let run = 1; run <= plan.runs; run += 1) {
        progress(`rolling reload at ${rate} tasks/s, run ${run}/${plan.runs}`, run - 1, plan.runs);
        const baseline = await bounded('the reload baseline', paced(connections, rate, runMs));
        noteFailures(baseline);
        const reload = new Promise<number>((resolve, reject) => {
          setTimeout(() => control.reload().then((report) => resolve(report.ms), reject), runMs / 4);
        });
        const during = await bounded('a reload under load', paced(connections, rate, runMs));
        noteFailures(during);
        reloadRuns.push({ ms: await reload, p99: during.p99, max: during.max, baselineP99: baseline.p99, baselineMax: baseline.max });
      }
    }

    // The HTTP door: POST /api/tasks at saturation, and the TCP saturation with a console open
    // (subscribed to /api/events, reading all of it) in turns with one without.
    const httpRuns: number[] = [];
    const withConsole: number[] = [];
    const withoutConsole: number[] = [];
    if (plan.phases.has('http') && target.httpPort !== undefined) {
      const httpPort = target.httpPort;
      const httpTasks = Math.round(plan.tasks / 4);
      noteFailures(await bounded('the HTTP warm-up', httpSaturate(httpPort, Math.round(httpTasks * WARMUP_SHARE), HTTP_IN_FLIGHT)));
      for (let run = 1; run <= plan.runs; run += 1) {
        progress(`HTTP: POST /api/tasks, run ${run}/${plan.runs}`, run - 1, plan.runs);
        const result = await metered('http', () => httpSaturate(httpPort, httpTasks, HTTP_IN_FLIGHT));
        noteFailures(result);
        httpRuns.push(result.tasksPerS);
        progress(`TCP saturation without and with a console open, run ${run}/${plan.runs}`, run - 0.5, plan.runs);
        const plain = await bounded('saturation', saturate(connections, plan.tasks, plan.window));
        noteFailures(plain);
        withoutConsole.push(plain.tasksPerS);
        const subscriber = await subscribeConsole(httpPort);
        try {
          const watched = await bounded('saturation with a console', saturate(connections, plan.tasks, plan.window));
          noteFailures(watched);
          withConsole.push(watched.tasksPerS);
        } finally {
          subscriber.close();
        }
      }
    }

    const saturationRss = (costs.saturation ?? []).flatMap((cost) => (cost.primaryRssMb === undefined ? [] : [cost.primaryRssMb]));
    const figures: Figure[] = [
      {
        key: 'saturation',
        label: `saturation, ${plan.connections}x${plan.window} in flight`,
        unit: 'tasks/s',
        value: saturationSpread,
        target: { bound: 'min', value: TARGETS.saturationPerS },
      },
      {
        key: 'saturation.leastLoaded',
        label: 'saturation, --dispatch least-loaded',
        unit: 'tasks/s',
        value: spread(leastLoaded),
      },
      ...latencyFigures,
      { key: 'tail.p99', label: 'p99 at 10% load, one connection', unit: 'ms', value: spread(tailRuns.map((result) => result.p99)) },
      { key: 'tail.floorP99', label: 'p99 at 10% load, bare chain', unit: 'ms', value: spread(tailFloorRuns.map((result) => result.p99)) },
      {
        key: 'tail.ratio',
        label: 'p99 Ronda / bare chain (each pair)',
        unit: 'x',
        value: spread(ratios(tailRuns.map((result) => result.p99), tailFloorRuns.map((result) => result.p99))),
        target: { bound: 'max', value: 1.2 },
      },
      { key: 'tail.p50', label: 'p50 at 10% load, one connection', unit: 'ms', value: spread(tailRuns.map((result) => result.p50)) },
      { key: 'tail.floorP50', label: 'p50 at 10% load, bare chain', unit: 'ms', value: spread(tailFloorRuns.map((result) => result.p50)) },
      {
        key: 'serial',
        label: 'one at a time (seed-style)',
        unit: 'tasks/s',
        value: spread(serialRuns.map((result) => result.tasksPerS)),
        target: { bound: 'min', value: TARGETS.serialPerS },
      },
      { key: 'serial.p50', label: 'one at a time, p50', unit: 'ms', value: spread(serialRuns.map((result) => result.p50)) },
      {
        key: 'serial.floor',
        label: 'one at a time, bare chain (the floor)',
        unit: 'tasks/s',
        value: spread(floorRuns.map((result) => result.tasksPerS)),
      },
      { key: 'serial.floorP50', label: 'bare chain, p50', unit: 'ms', value: spread(floorRuns.map((result) => result.p50)) },
      {
        key: 'serial.ratio',
        label: 'one at a time, Ronda / bare chain (each pair)',
        unit: 'x',
        value: spread(ratios(serialRuns.map((result) => result.tasksPerS), floorRuns.map((result) => result.tasksPerS))),
        target: { bound: 'min', value: 0.9 },
      },
      {
        key: 'recovery.ready',
        label: 'kill -9 -> replacement ready',
        unit: 'ms',
        value: spread(recoveryRuns.map((result) => result.readyMs)),
        target: { bound: 'max', value: TARGETS.replacementReadyMs },
      },
      {
        key: 'recovery.diedToReady',
        label: "'died' -> 'ready' (primary's stats)",
        unit: 'ms',
        value: spread(recoveryRuns.flatMap((result) => (result.diedToReadyMs === undefined ? [] : [result.diedToReadyMs]))),
      },
      {
        key: 'recovery.heldDone',
        label: 'kill -9 -> all tasks in flight answered',
        unit: 'ms',
        value: spread(recoveryRuns.map((result) => result.heldDoneMs)),
      },
      {
        key: 'recovery.held',
        label: 'tasks the killed worker held',
        unit: 'tasks',
        value: spread(recoveryRuns.map((result) => result.held)),
      },
      { key: 'reload.ms', label: 'rolling reload of every worker', unit: 'ms', value: spread(reloadRuns.map((result) => result.ms)) },
      { key: 'reload.p99', label: 'p99 of a paced load through a reload', unit: 'ms', value: spread(reloadRuns.map((result) => result.p99)) },
      { key: 'reload.max', label: 'slowest task through a reload', unit: 'ms', value: spread(reloadRuns.map((result) => result.max)) },
      { key: 'reload.baselineP99', label: 'p99 of the same load, no reload', unit: 'ms', value: spread(reloadRuns.map((result) => result.baselineP99)) },
      { key: 'reload.baselineMax', label: 'slowest task, no reload', unit: 'ms', value: spread(reloadRuns.map((result) => result.baselineMax)) },
      {
        key: 'http.saturation',
        label: `HTTP POST /api/tasks, ${HTTP_IN_FLIGHT} in flight`,
        unit: 'tasks/s',
        value: spread(httpRuns),
      },
      {
        key: 'http.withoutConsole',
        label: 'saturation, no console (in turns)',
        unit: 'tasks/s',
        value: spread(withoutConsole),
      },
      {
        key: 'http.withConsole',
        label: 'saturation, console subscribed',
        unit: 'tasks/s',
        value: spread(withConsole),
      },
      {
        key: 'http.consoleShare',
        label: 'with console / without (each pair, %)',
        unit: '%',
        value: spread(withConsole.map((value, index) => Math.round((value / (withoutConsole[index] ?? value)) * 1000) / 10)),
        target: { bound: 'min', value: 90 },
      },
      {
        key: 'memory.primaryRss',
        label: 'primary RSS at saturation',
        unit: 'MB',
        value: spread(saturationRss),
        target: { bound: 'max', value: TARGETS.primaryRssMb },
      },
    ];
    const cpu = medianCpu(costs);
    // CPU time per task does not depend on what else the machine runs, unlike tasks/s.
    const perTask = cpuPerTask(costs.saturation ?? [], saturationTasks);
    if (perTask !== undefined) cpu['saturation, CPU µs per task'] = perTask;
    const peak = target.primaryPid === undefined ? undefined : memoryOf(target.primaryPid)?.peakRssMb;
    return {
      figures,
      cpu,
      failed,
      firstFailure,
      floorError,
      json: {
        startedAt,
        machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, platform: process.platform },
        target: target.primaryPid === undefined ? `${target.host}:${target.port}` : 'own',
        plan: { ...plan, phases: [...plan.phases] },
        figures: Object.fromEntries(
          figures.map((figure) => [
            figure.key,
            { unit: figure.unit, ...figure.value, target: figure.target, met: targetMet(figure) },
          ]),
        ),
        latencyLoads: latencyJson,
        recovery: recoveryRuns,
        primaryPeakRssMb: peak,
        cpuPercent: cpu,
        failed,
        firstFailure,
        floorError,
      },
    };
  } finally {
    await closeAll(connections);
  }
}

/** The least-loaded cluster and its connections, when the bench started the first one itself. */
async function startContender(
  contender: (() => Promise<BenchTarget>) | undefined,
  endpoint: Endpoint,
  plan: BenchPlan,
): Promise<{ target: BenchTarget; connections: RondaConnection[] } | undefined> {
  if (contender === undefined) return undefined;
  const target = await contender();
  try {
    return { target, connections: await connectAll({ ...endpoint, host: target.host, port: target.port }, plan.connections) };
  } catch (error) {
    await target.stop();
    throw error;
  }
}

/** The primary and its workers, when the bench started them (their CPU time is then readable). */
async function watched(target: BenchTarget, control: RondaConnection): Promise<Watched[]> {
  if (target.primaryPid === undefined) return [];
  const stats = await control.stats();
  return [
    { name: 'primary', pid: target.primaryPid },
    ...stats.workers.flatMap((worker) => (worker.pid === null ? [] : [{ name: `worker${worker.slot}`, pid: worker.pid }])),
  ];
}

function medianCpu(costs: Record<string, PhaseCost[]>): CpuByPhase {
  const cpu: CpuByPhase = {};
  for (const [phase, runs] of Object.entries(costs)) {
    const names = [...new Set(runs.flatMap((run) => Object.keys(run.cpuPercent)))];
    cpu[phase] = Object.fromEntries(
      names.map((name) => [name, spread(runs.flatMap((run) => run.cpuPercent[name] ?? []))?.median ?? 0]),
    );
  }
  return cpu;
}

/** Median CPU microseconds per task of each process (and their sum) over the saturation runs. */
function cpuPerTask(runs: readonly PhaseCost[], tasks: readonly number[]): Record<string, number> | undefined {
  if (runs.length === 0) return undefined;
  const names = [...new Set(runs.flatMap((run) => Object.keys(run.cpuSeconds)))].filter((name) => name !== 'others');
  const perRun = runs.map((run, index) => {
    const count = Math.max(1, tasks[index] ?? 1);
    const values: Record<string, number> = {};
    let total = 0;
    for (const name of names) {
      const micros = ((run.cpuSeconds[name] ?? 0) / count) * 1e6;
      values[name] = micros;
      total += micros;
    }
    values.total = total;
    return values;
  });
  return Object.fromEntries(
    [...names, 'total'].map((name) => [
      name,
      Math.round((spread(perRun.map((values) => values[name] ?? 0))?.median ?? 0) * 10) / 10,
    ]),
  );
}

/** Each pair's ratio, to two decimals; pairs the bare chain has no run for are left out. */
function ratios(ronda: readonly number[], floor: readonly number[]): number[] {
  return ronda.flatMap((value, index) => {
    const base = floor[index];
    return base === undefined || base === 0 ? [] : [Math.round((value / base) * 100) / 100];
  });
}

/** `promise`, or an error once RUN_LIMIT_MS have passed without it settling. */
async function bounded<T>(what: string, promise: Promise<T>): Promise<T> {
  const result = await withDeadline(
    promise.then((value) => ({ value })),
    RUN_LIMIT_MS,
  );
  if (result === undefined) throw new Error(`${what} did not finish within ${RUN_LIMIT_MS / 1000} s`);
  return result.value;
}
