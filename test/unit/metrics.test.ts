import { expect } from 'chai';
import { RECENT_TASKS, SERIES_SECONDS, TaskMetrics } from '../../server/metrics';
import { NO_ATTEMPTS, type Outcome, type Task } from '../../server/task';

const task = (kind: string, taskId = 't'): Task => ({
  taskId,
  clientId: undefined,
  kind,
  payload: '',
  payloadJson: undefined,
  chars: 1,
  timeoutMs: 1_000,
  retries: 0,
  owner: { label: '#1', settle: () => undefined },
  acceptedAt: 0,
  ...NO_ATTEMPTS,
});
const done: Outcome = { status: 'done', result: '"x"', json: true, worker: 1 };
const failed: Outcome = { status: 'failed', error: { code: 'TIMEOUT', message: 'late' }, worker: 2 };

describe('TaskMetrics: what the primary counts as tasks settle', function () {
  it('counts outcomes by kind and code, and durations into cumulative buckets', function () {
    const metrics = new TaskMetrics();
    for (let i = 0; i < 10; i += 1) metrics.settled(task('text'), done, 0.3);
    metrics.settled(task('text'), done, 30);
    metrics.settled(task('sleep'), failed, 2_000);
    expect(metrics.outcomes()).to.deep.equal([
      { kind: 'text', outcome: 'done', count: 11 },
      { kind: 'sleep', outcome: 'TIMEOUT', count: 1 },
    ]);
    const text = metrics.kindCounts().get('text');
    expect(text?.count).to.equal(11);
    expect(text?.buckets[0]).to.equal(10); // <= 0.5 ms
    expect(text?.buckets[6]).to.equal(1); // 25 ms < 30 ms <= 50 ms
    expect(text?.sum).to.be.closeTo(0.033, 1e-9);
  });

  it('closes each second into a point with p50 and p99 to within a bucket, and keeps ten minutes', function () {
    const metrics = new TaskMetrics();
    for (let i = 1; i <= 100; i += 1) metrics.settled(task('text'), i === 100 ? failed : done, i);
    const point = metrics.tick(1_000);
    expect(point).to.include({ t: 1_000, done: 99, failed: 1 });
    expect(point.p50).to.be.within(50, 50 * 1.19);
    expect(point.p99).to.be.within(99, 99 * 1.19);
    expect(metrics.tick(2_000)).to.deep.equal({ t: 2_000, done: 0, failed: 0, p50: null, p99: null });
    for (let s = 0; s < SERIES_SECONDS + 5; s += 1) metrics.tick();
    expect(metrics.series()).to.have.length(SERIES_SECONDS);
  });

  it('keeps the latest settled tasks for the feed only while someone watches', function () {
    const metrics = new TaskMetrics();
    metrics.settled(task('text', 'unwatched'), done, 1);
    expect(metrics.takeRecent()).to.deep.equal([]);
    metrics.watching = true;
    for (let i = 0; i < RECENT_TASKS + 5; i += 1) metrics.settled(task('text', `t${i}`), done, 1);
    const recent = metrics.takeRecent();
    expect(recent.map((entry) => entry.taskId)).to.deep.equal(Array.from({ length: RECENT_TASKS }, (_, i) => `t${i + 5}`));
    expect(metrics.takeRecent()).to.deep.equal([]);
  });
});
