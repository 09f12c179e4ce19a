/**
 * What the processes of a local cluster cost while a benchmark phase runs: CPU time of each (from
 * /proc/<pid>/stat, so "which process is at 100%" is measured, not guessed) and the primary's
 * resident memory (/proc/<pid>/status). Linux only; elsewhere every figure is undefined.
 */
import { readFileSync } from 'node:fs';
import { cpuSecondsOf, memoryBytesOf, TICKS_PER_S } from '../shared/proc';
const RSS_SAMPLE_MS = 100;

export interface ProcessMemory {
  rssMb: number;
  peakRssMb: number;
}

/** VmRSS and VmHWM (the peak since the process started) of `pid`, in MB. */
export function memoryOf(pid: number): ProcessMemory | undefined {
  const memory = memoryBytesOf(pid);
  return memory === undefined ? undefined : { rssMb: memory.rss / 1024 / 1024, peakRssMb: memory.peak / 1024 / 1024 };
}

/** CPU seconds the whole machine has spent busy (all cores, all processes) so far. */
function machineBusySecondsNow(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = ticks.reduce((sum, value, index) => (index === 3 || index === 4 ? sum : sum + value), 0);
    return Number.isFinite(busy) ? busy / TICKS_PER_S : undefined;
  } catch {
    return undefined;
  }
}

/** A process to watch, by a name for the report. */
export interface Watched {
  name: string;
  pid: number;
}

export interface PhaseCost {
  /** Percent of one core each process used over the phase (the bench client included). */
  cpuPercent: Record<string, number>;
  /** CPU seconds each process used over the phase. */
  cpuSeconds: Record<string, number>;
  /** Largest VmRSS of the primary sampled during the phase, in MB. */
  primaryRssMb: number | undefined;
}

/** Starts measuring; call the returned function when the phase ends. */
export function meterPhase(watched: readonly Watched[], primaryPid: number | undefined): () => PhaseCost {
  const startedAt = performance.now();
  const startCpu = new Map(watched.map((process) => [process.name, cpuSecondsOf(process.pid)]));
  const ownStart = process.cpuUsage();
  const machineStart = machineBusySecondsNow();
  let primaryRssMb: number | undefined;
  const sampleRss = (): void => {
    if (primaryPid === undefined) return;
    const memory = memoryOf(primaryPid);
    if (memory !== undefined) primaryRssMb = Math.max(primaryRssMb ?? 0, memory.rssMb);
  };
  sampleRss();
  const timer = setInterval(sampleRss, RSS_SAMPLE_MS);
  return () => {
    clearInterval(timer);
    sampleRss();
    const seconds = (performance.now() - startedAt) / 1000;
    const cpuSeconds: Record<string, number> = {};
    for (const { name, pid } of watched) {
      const before = startCpu.get(name);
      const after = cpuSecondsOf(pid);
      if (before !== undefined && after !== undefined) cpuSeconds[name] = after - before;
    }
    const own = process.cpuUsage(ownStart);
    cpuSeconds.bench = (own.user + own.system) / 1e6;
    // Whatever else the machine ran meanwhile (other people's tests): the noise in these figures.
    const machineEnd = machineBusySecondsNow();
    if (machineStart !== undefined && machineEnd !== undefined && watched.length > 0) {
      const ours = Object.values(cpuSeconds).reduce((sum, value) => sum + value, 0);
      cpuSeconds.others = Math.max(0, machineEnd - machineStart - ours);
    }
    const cpuPercent: Record<string, number> = {};
    for (const [name, used] of Object.entries(cpuSeconds)) {
      if (seconds > 0) cpuPercent[name] = Math.round((used / seconds) * 100);
    }
    return { cpuPercent, cpuSeconds, primaryRssMb };
  };
}
