/**
 * A small log-bucketed latency histogram (the idea of HdrHistogram, in 60 lines): values from
 * 1 µs to about 1 hour in buckets no wider than 1/SUB_BUCKETS of their value, so a percentile is
 * within about 1.6% of the true value whatever the count. Recording is O(1) and allocation-free,
 * which matters when recording runs on the same 2 cores as the cluster under test.
 */

/** Buckets per power of two: 64 keeps the relative error of a percentile under 1/64. */
const SUB_BUCKETS = 64;
/** Powers of two covered above 1 µs: 2^32 µs is about 71 minutes. */
const OCTAVES = 32;

export class Histogram {
  private readonly counts = new Float64Array(OCTAVES * SUB_BUCKETS + SUB_BUCKETS);
  private total = 0;
  private maxUs = 0;
  private minUs = Number.POSITIVE_INFINITY;

  get count(): number {
    return this.total;
  }

  /** Records one value in milliseconds. */
  record(ms: number): void {
    const us = Math.max(0, Math.round(ms * 1000));
    const bucket = bucketOf(us);
    this.counts[bucket] = (this.counts[bucket] ?? 0) + 1;
    this.total += 1;
    if (us > this.maxUs) this.maxUs = us;
    if (us < this.minUs) this.minUs = us;
  }

  /** The value (ms) at or below which `percent` of the recorded values lie; 0 when empty. */
  percentile(percent: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((percent / 100) * this.total));
    let seen = 0;
    for (let bucket = 0; bucket < this.counts.length; bucket += 1) {
      seen += this.counts[bucket] ?? 0;
      // The bucket's upper bound, clamped to the true extremes so p0 and p100 are exact.
      if (seen >= rank) return Math.min(Math.max(upperBoundOf(bucket), this.minUs), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  get max(): number {
    return this.total === 0 ? 0 : this.maxUs / 1000;
  }
}

/** Values below SUB_BUCKETS µs get a bucket each; above, each octave is split in SUB_BUCKETS. */
function bucketOf(us: number): number {
  if (us < SUB_BUCKETS) return us;
  const octave = Math.min(Math.floor(Math.log2(us / SUB_BUCKETS)), OCTAVES - 1);
  const base = SUB_BUCKETS * 2 ** octave;
  const sub = Math.min(Math.floor((us - base) / 2 ** octave), SUB_BUCKETS - 1);
  return SUB_BUCKETS + octave * SUB_BUCKETS + sub;
}

function upperBoundOf(bucket: number): number {
  if (bucket < SUB_BUCKETS) return bucket;
  const octave = Math.floor((bucket - SUB_BUCKETS) / SUB_BUCKETS);
  const sub = (bucket - SUB_BUCKETS) % SUB_BUCKETS;
  return SUB_BUCKETS * 2 ** octave + (sub + 1) * 2 ** octave - 1;
}
