/**
 * A process's CPU time and memory, read from /proc: for the bench's CPU table and the primary's
 * metrics of its workers. Linux only; elsewhere (or for a process that is gone) undefined.
 */
import { readFileSync } from 'node:fs';

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux architecture Node runs on. */
export const TICKS_PER_S = 100;

/** CPU seconds (user + system) `pid` has used so far. */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** VmRSS (resident now) and VmHWM (the peak since the process started) of `pid`, in bytes. */
export function memoryBytesOf(pid: number): { rss: number; peak: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const rss = kb('VmRSS');
  const peak = kb('VmHWM');
  if (Number.isNaN(rss) || Number.isNaN(peak)) return undefined;
  return { rss: rss * 1024, peak: peak * 1024 };
}
