/**
 * What the primary counts as it settles tasks, and how it is read: the Prometheus exposition at
 * /metrics (prom-client's registry, with the primary's process metrics), the per-second series
 * the console's charts draw (the last 10 minutes, kept in the primary, so a page opened later
 * sees them too), and the latest settled tasks for the console's live feed.
 *
 * Counting is on the task path, so it is a few additions per task into plain numbers and typed
 * arrays; prom-client reads them only when scraped (its own labelled counters and histograms cost
 * about 1 µs per task here, a tenth of what the primary spends on one).
 */
import client from 'prom-client';
import type { ErrorCode } from '../shared/errors';
import { cpuSecondsOf, memoryBytesOf } from '../shared/proc';
import type { WorkerStats } from '../shared/protocol';
import type { Outcome, Task } from './task';

/** Upper bounds (seconds) of ronda_task_duration_seconds' buckets. */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
] as const;
/** Seconds of history the series keeps: the charts' 10 minutes. */
export const SERIES_SECONDS = 600;
/** Settled tasks kept for the live feed between two ticks. */
export const RECENT_TASKS = 20;

/** One second of the series. */
export interface SeriesPoint {
  /** The second's end, ms since the epoch. */
  t: number;
  done: number;
  failed: number;
  /** Latency percentiles of the tasks settled in that second (ms, to about 10%); null if none. */
  p50: number | null;
  p99: number | null;
}

/** A settled task as the live feed shows it. */
export interface RecentTask {
  taskId: string;
  id: string | undefined;
  kind: string;
  status: 'done' | 'failed';
  code: ErrorCode | undefined;
  worker: number | undefined;
  ms: number;
}

/** What the metrics read from the rest of the primary at a scrape. */
export interface MetricsSources {
  workers(): readonly WorkerStats[];
  queued(): number;
  connections(): number;
  connectionsTotal(): number;
  redeliveries(): number;
}

/** Counts of one kind: its outcomes and its duration histogram. */
class KindCounts {
  /** Done tasks; failures by code below (rare, so a map). */
  done = 0;
  readonly failures = new Map<string, number>();
  /** Per bucket of DURATION_BUCKETS, then +Inf; not cumulative (summed at a scrape). */
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1);
  sum = 0;
  count = 0;
}

/**
 * The series' latency histogram of one second: bucket i holds latencies up to
 * FINE_BASE_MS * 2^(i / FINE_PER_OCTAVE), so a percentile is known to within 19%, from 0.05 ms to
 * about 1.6 hours, in 100 buckets.
 */
const FINE_BASE_MS = 0.05;
const FINE_PER_OCTAVE = 4;
const FINE_BUCKETS = 100;

function fineBucket(ms: number): number {
  if (ms <= FINE_BASE_MS) return 0;
  return Math.min(FINE_BUCKETS - 1, Math.ceil(Math.log2(ms / FINE_BASE_MS) * FINE_PER_OCTAVE));
}

function fineUpperMs(bucket: number): number {
  return FINE_BASE_MS * 2 ** (bucket / FINE_PER_OCTAVE);
}

export class TaskMetrics {
  private readonly kinds = new Map<string, KindCounts>();
  private secondDone = 0;
  private secondFailed = 0;
  private readonly secondLatency = new Uint32Array(FINE_BUCKETS);
  private readonly points: SeriesPoint[] = [];
  /** A ring of the latest settled tasks, filled only while someone watches (see watching). */
  private readonly recent: RecentTask[] = [];
  private recentNext = 0;
  /** Whether a console is subscribed: only then is each settled task kept for the feed. */
  watching = false;

  /** Called by the dispatcher for every settled task, with its latency from acceptance. */
  settled(task: Task, outcome: Outcome, ms: number): void {
    const { kind } = task;
    let counts = this.kinds.get(kind);
    if (counts === undefined) {
      counts = new KindCounts();
      this.kinds.set(kind, counts);
    }
    if (outcome.status === 'done') {
      counts.done += 1;
      this.secondDone += 1;
    } else {
      const { code } = outcome.error;
      counts.failures.set(code, (counts.failures.get(code) ?? 0) + 1);
      this.secondFailed += 1;
    }
    const seconds = ms / 1000;
    let bucket = 0;
    while (bucket < DURATION_BUCKETS.length && seconds > (DURATION_BUCKETS[bucket] as number)) bucket += 1;
    (counts.buckets[bucket] as number) += 1;
    counts.sum += seconds;
    counts.count += 1;

    (this.secondLatency[fineBucket(ms)] as number) += 1;

    if (!this.watching) return;
    const entry: RecentTask = {
      taskId: task.taskId,
      id: task.clientId,
      kind,
      status: outcome.status,
      code: outcome.status === 'done' ? undefined : outcome.error.code,
      worker: outcome.worker,
      ms: Math.round(ms * 100) / 100,
    };
    if (this.recent.length < RECENT_TASKS) this.recent.push(entry);
    else this.recent[this.recentNext] = entry;
    this.recentNext = (this.recentNext + 1) % RECENT_TASKS;
  }

  /** Closes the current second into the series (called once a second); returns its point. */
  tick(now = Date.now()): SeriesPoint {
    const total = this.secondDone + this.secondFailed;
    const point: SeriesPoint = {
      t: now,
      done: this.secondDone,
      failed: this.secondFailed,
      p50: total === 0 ? null : this.percentile(total, 0.5),
      p99: total === 0 ? null : this.percentile(total, 0.99),
    };
    this.secondDone = 0;
    this.secondFailed = 0;
    this.secondLatency.fill(0);
    this.points.push(point);
    if (this.points.length > SERIES_SECONDS) this.points.shift();
    return point;
  }

  /** The last SERIES_SECONDS points, oldest first. */
  series(): SeriesPoint[] {
    return [...this.points];
  }

  /** The settled tasks kept since the last call, oldest first; empties the feed. */
  takeRecent(): RecentTask[] {
    const ordered =
      this.recent.length < RECENT_TASKS
        ? this.recent.slice()
        : [...this.recent.slice(this.recentNext), ...this.recent.slice(0, this.recentNext)];
    this.recent.length = 0;
    this.recentNext = 0;
    return ordered;
  }

  /** Total settled tasks by kind and outcome (`done` or the error code). */
  outcomes(): { kind: string; outcome: string; count: number }[] {
    const all = [];
    for (const [kind, counts] of this.kinds) {
      if (counts.done > 0) all.push({ kind, outcome: 'done', count: counts.done });
      for (const [outcome, count] of counts.failures) all.push({ kind, outcome, count });
    }
    return all;
  }

  kindCounts(): ReadonlyMap<string, { buckets: Float64Array; sum: number; count: number }> {
    return this.kinds;
  }

  private percentile(total: number, q: number): number {
    const rank = Math.ceil(total * q);
    let seen = 0;
    for (let bucket = 0; bucket < FINE_BUCKETS; bucket += 1) {
      seen += this.secondLatency[bucket] as number;
      if (seen >= rank) return Math.round(fineUpperMs(bucket) * 100) / 100;
    }
    return Math.round(fineUpperMs(FINE_BUCKETS - 1) * 100) / 100;
  }
}

/**
 * The Prometheus registry of one primary: the task metrics, the cluster's gauges, the primary's
 * process metrics (prom-client's defaults) and each worker's CPU and memory, read from /proc at
 * the scrape (the workers spend nothing on it).
 */
export function metricsRegistry(metrics: TaskMetrics, sources: MetricsSources): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const registers = [registry];

  new client.Counter({
    name: 'ronda_tasks_total',
    help: 'Tasks settled, by kind and outcome (done, or the error code)',
    labelNames: ['kind', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const { kind, outcome, count } of metrics.outcomes()) this.inc({ kind, outcome }, count);
    },
  });
  registry.registerMetric(durationHistogram(metrics) as unknown as client.Metric);
  new client.Counter({
    name: 'ronda_worker_restarts_total',
    help: 'Workers of the slot replaced after they died or were killed',
    labelNames: ['worker'],
    registers,
    collect() {
      this.reset();
      for (const worker of sources.workers()) this.inc({ worker: String(worker.slot) }, worker.restarts);
    },
  });
  new client.Counter({
    name: 'ronda_redeliveries_total',
    help: 'Tasks handed to a worker again because the one that held them died',
    registers,
    collect() {
      this.reset();
      this.inc(sources.redeliveries());
    },
  });
  new client.Counter({
    name: 'ronda_connections_total',
    help: 'TCP client connections accepted',
    registers,
    collect() {
      this.reset();
      this.inc(sources.connectionsTotal());
    },
  });
  new client.Gauge({
    name: 'ronda_queue_depth',
    help: 'Tasks accepted and waiting for a worker',
    registers,
    collect() {
      this.set(sources.queued());
    },
  });
  new client.Gauge({
    name: 'ronda_tasks_in_flight',
    help: 'Tasks a worker slot holds (sent, running, or waiting to be redelivered)',
    labelNames: ['worker'],
    registers,
    collect() {
      for (const worker of sources.workers()) this.set({ worker: String(worker.slot) }, worker.inflight);
    },
  });
  new client.Gauge({
    name: 'ronda_workers_ready',
    help: 'Worker slots whose worker is ready',
    registers,
    collect() {
      this.set(sources.workers().filter((worker) => worker.state === 'ready').length);
    },
  });
  new client.Gauge({
    name: 'ronda_connections',
    help: 'Open TCP client connections',
    registers,
    collect() {
      this.set(sources.connections());
    },
  });
  new client.Gauge({
    name: 'ronda_worker_cpu_seconds',
    help: 'CPU time (user and system) of the worker process now in the slot',
    labelNames: ['worker'],
    registers,
    collect() {
      this.reset();
      for (const worker of sources.workers()) {
        const cpu = worker.pid === null ? undefined : cpuSecondsOf(worker.pid);
        if (cpu !== undefined) this.set({ worker: String(worker.slot) }, cpu);
      }
    },
  });
  new client.Gauge({
    name: 'ronda_worker_resident_memory_bytes',
    help: 'Resident memory of the worker process now in the slot',
    labelNames: ['worker'],
    registers,
    collect() {
      this.reset();
      for (const worker of sources.workers()) {
        const rss = worker.pid === null ? undefined : memoryBytesOf(worker.pid)?.rss;
        if (rss !== undefined) this.set({ worker: String(worker.slot) }, rss);
      }
    },
  });
  return registry;
}

/**
 * ronda_task_duration_seconds, a histogram made from TaskMetrics' buckets at the scrape (prom-client
 * has no way to set a histogram's buckets, only to observe one value at a time).
 */
function durationHistogram(metrics: TaskMetrics) {
  const name = 'ronda_task_duration_seconds';
  const help = 'Time from a task accepted to settled, by kind';
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    reset: () => undefined,
    get: () => {
      const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
      for (const [kind, counts] of metrics.kindCounts()) {
        let cumulative = 0;
        DURATION_BUCKETS.forEach((le, index) => {
          cumulative += counts.buckets[index] as number;
          values.push({ metricName: `${name}_bucket`, labels: { kind, le }, value: cumulative });
        });
        cumulative += counts.buckets[DURATION_BUCKETS.length] as number;
        values.push({ metricName: `${name}_bucket`, labels: { kind, le: '+Inf' }, value: cumulative });
        values.push({ metricName: `${name}_sum`, labels: { kind }, value: counts.sum });
        values.push({ metricName: `${name}_count`, labels: { kind }, value: counts.count });
      }
      return { name, help, type: 'histogram', values, aggregator: 'sum' };
    },
  };
}
