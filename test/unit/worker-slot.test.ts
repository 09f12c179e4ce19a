import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { Logger } from '../../shared/logger';
import type { StoredOutcome } from '../../shared/results-db';
import { NO_ATTEMPTS, type Outcome, type Task } from '../../server/task';
import type { WorkerProcess } from '../../server/worker-process';
import { WorkerSlot, type SlotEvents } from '../../server/worker-slot';
import { until } from '../helpers/cluster';

/** A worker process that does only what the test makes it do. */
class FakeChild extends EventEmitter {
  readonly pid: number | undefined;
  connected = true;
  readonly signals: string[] = [];
  readonly sent: unknown[] = [];
  constructor(pid: number | undefined) {
    super();
    this.pid = pid;
  }
  kill(signal: string): boolean {
    this.signals.push(signal);
    return true;
  }
  send(message: unknown, callback?: (error: Error | null) => void): boolean {
    this.sent.push(message);
    callback?.(null);
    // Told to stop, it stops, as a real worker does once its tasks are stored.
    if ((message as { type?: string }).type === 'shutdown') setImmediate(() => this.emit('exit', 0, null));
    return true;
  }
  /** The process ends: what the kernel reports after a SIGKILL. */
  die(): void {
    this.connected = false;
    this.emit('exit', null, 'SIGKILL');
  }
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('WorkerSlot (a fake child process)', function () {
  let children: FakeChild[];
  let log: string;
  let settled: [Task, Outcome][];
  let returned: Task[];
  let endedGroups: number[];
  let findStored: (taskIds: readonly string[]) => Promise<Map<string, StoredOutcome>>;
  /** How the next forks fail: 'throw' (fork() throws), 'error' (an 'error' event, no pid, no 'exit'). */
  let forkFailures: ('throw' | 'error')[];

  function makeSlot(readyTimeoutMs: number, maxAttempts = 1): WorkerSlot {
    const stream = new PassThrough();
    stream.setEncoding('utf8').on('data', (text: string) => (log += text));
    const events: SlotEvents = {
      ready: () => undefined,
      settled: (_slot, outcomes) => settled.push(...outcomes),
      returned: (_slot, tasks) => returned.push(...tasks),
      changed: () => undefined,
      worn: () => undefined,
      retry: () => undefined,
    };
    return new WorkerSlot({
      slot: 1,
      args: [],
      endGroup: (pid) => endedGroups.push(pid),
      findStored: (taskIds) => findStored(taskIds),
      maxInflight: 4,
      maxAttempts,
      readyTimeoutMs,
      logger: new Logger({ stream, env: { NO_COLOR: '1' } }),
      events,
      spawn: () => {
        const failure = forkFailures.shift();
        if (failure === 'throw') throw new Error('spawn EAGAIN');
        const child = new FakeChild(failure === 'error' ? undefined : 1000 + children.length);
        children.push(child);
        if (failure === 'error') {
          child.connected = false;
          process.nextTick(() => child.emit('error', new Error('spawn EMFILE')));
        }
        return child as unknown as WorkerProcess;
      },
    });
  }

  beforeEach(() => {
    children = [];
    log = '';
    settled = [];
    returned = [];
    endedGroups = [];
    findStored = () => Promise.resolve(new Map());
    forkFailures = [];
  });

  const task = (taskId: string, timeoutMs: number): Task => ({
    taskId,
    clientId: undefined,
    kind: 'text',
    payload: taskId,
    payloadJson: undefined,
    chars: 10,
    timeoutMs,
    retries: 0,
    owner: { label: '#1', settle: () => undefined },
    acceptedAt: 0,
    ...NO_ATTEMPTS,
  });

  it('takes no new task while it kills its worker for a time limit', async function () {
    const slot = makeSlot(1_000);
    const started = slot.start();
    children[0]?.emit('message', { type: 'ready', pid: 1000, kinds: ['text'] });
    await started;
    slot.assign(task('slow', 10));
    await wait(5);
    expect(children[0]?.sent).to.have.length(1);
    expect(slot.canTake()).to.equal(true);
    // Not running yet as far as the slot knows: no clock, however late it is.
    slot.sweepTimeouts(performance.now() + 60_000);
    expect(children[0]?.signals).to.deep.equal([]);
    children[0]?.emit('message', { type: 'running', tasks: [{ ordinal: 0, runningMs: 5 }] });
    // Overdue at one sweep is not enough: its outcome may wait unread. Overdue at the next, it is.
    slot.sweepTimeouts(performance.now() + 20);
    expect(children[0]?.signals).to.deep.equal([]);
    slot.sweepTimeouts(performance.now() + 70);
    expect(children[0]?.signals).to.deep.equal(['SIGKILL']);
    // The worker is not gone yet: a task handed over now would die with it.
    expect(slot.canTake()).to.equal(false);
    children[0]?.die();
    children[1]?.emit('message', { type: 'ready', pid: 1001, kinds: ['text'] });
    expect(slot.state).to.equal('ready');
    expect(slot.canTake()).to.equal(true);
    // The replacement is told to store the TIMEOUT, not to run the task again.
    await wait(5);
    const sent = children[1]?.sent as { tasks: { taskId: string; failWith?: { code: string } }[] }[];
    expect(sent.flatMap((message) => message.tasks)).to.deep.include({
      taskId: 'slow',
      kind: 'text',
      payload: 'slow',
      redelivered: true,
      failWith: { code: 'TIMEOUT', message: 'task ran past its time limit of 10 ms' },
    });
    expect(endedGroups, 'the dead worker\'s process group is ended').to.deep.equal([1000]);
    children[1]?.emit('message', { type: 'outcomes', outcomes: [{ taskId: 'slow', status: 'failed', error: { code: 'TIMEOUT', message: 'm' } }] });
    expect(settled.map(([settledTask, outcome]) => [settledTask.taskId, outcome.status])).to.deep.equal([['slow', 'failed']]);
    await slot.stop();
  });

  it('kills a first worker that is not ready in time, and start() fails with the reason', async function () {
    const slot = makeSlot(50);
    const started = slot.start();
    await wait(80);
    expect(children[0]?.signals).to.deep.equal(['SIGKILL']);
    children[0]?.die();
    let error: unknown;
    await started.catch((caught: unknown) => (error = caught));
    expect(String(error)).to.include('worker 1: worker pid 1000 exited before it was ready (killed: not ready within 50 ms)');
  });

  it('ignores a ready that arrives after the kill: start() does not succeed, no task is handed over', async function () {
    const slot = makeSlot(50);
    let outcome = 'pending';
    slot.start().then(
      () => (outcome = 'started'),
      () => (outcome = 'failed'),
    );
    await wait(80);
    children[0]?.emit('message', { type: 'ready', pid: 1000, kinds: ['text'] });
    await wait(0);
    expect(slot.state).to.equal('starting');
    expect(slot.canTake()).to.equal(false);
    expect(outcome).to.equal('pending');
    children[0]?.die();
    await wait(0);
    expect(outcome).to.equal('failed');
  });

  it('counts a replacement that is not ready in time as dying young, and backs off', async function () {
    const slot = makeSlot(50);
    const started = slot.start();
    children[0]?.emit('message', { type: 'ready', pid: 1000, kinds: ['text'] });
    await started;
    // The first worker dies young on its own; its replacement never says ready.
    children[0]?.die();
    expect(children).to.have.length(2);
    await wait(80);
    expect(children[1]?.signals).to.deep.equal(['SIGKILL']);
    children[1]?.emit('message', { type: 'ready', pid: 1001, kinds: ['text'] });
    children[1]?.die();
    expect(slot.state).to.equal('backoff');
    expect(log).to.include('worker pid 1001 is not ready 50 ms after it was started; killing it');
    expect(log).to.include('worker pid 1001 exited before it was ready (killed: not ready within 50 ms)');
    expect(log).to.include('worker keeps dying young (2 in a row); respawning in 100 ms');
    await slot.stop();
    expect(settled).to.deep.equal([]);
  });

  /** Starts a slot and makes its first worker ready. */
  async function readySlot(readyTimeoutMs = 1_000, maxAttempts = 1): Promise<WorkerSlot> {
    const slot = makeSlot(readyTimeoutMs, maxAttempts);
    const started = slot.start();
    children[0]?.emit('message', { type: 'ready', pid: 1000, kinds: ['text'] });
    await started;
    return slot;
  }

  const sentTasks = (child: FakeChild | undefined): string[] =>
    (child?.sent ?? []).flatMap((message) => ((message as { tasks?: { taskId: string }[] }).tasks ?? []).map((spec) => spec.taskId));

  it('retries a fork that fails (thrown, or an error event with no pid and no exit) and gives the held tasks to the next worker', async function () {
    const slot = await readySlot(1_000, 3);
    slot.assign(task('held', 60_000));
    await wait(5);
    forkFailures = ['throw', 'error'];
    children[0]?.die();
    // Two failed forks, each a young death: the slot backs off and tries again, never stuck in `starting`.
    await until(() => children.length === 3 && children[2]?.pid !== undefined, 2_000);
    expect(log).to.include('could not start a worker process: spawn EAGAIN');
    expect(log).to.include('could not be started: spawn EMFILE');
    expect(log).to.match(/keeps dying young \(3 in a row\); respawning in 200 ms/);
    children[2]?.emit('message', { type: 'ready', pid: 1002, kinds: ['text'] });
    expect(slot.state).to.equal('ready');
    await wait(5);
    expect(sentTasks(children[2])).to.deep.equal(['held']);
    await slot.stop();
  });

  it('after 3 failed starts in a row answers its held tasks from its file and gives the rest to other slots', async function () {
    const slot = await readySlot(1_000, 3);
    for (const id of ['stored', 'unstored']) slot.assign(task(id, 60_000));
    await wait(5);
    findStored = (taskIds) => {
      expect(taskIds).to.have.members(['stored', 'unstored']);
      return Promise.resolve(new Map([['stored', { status: 'done' as const, result: 'from the row' }]]));
    };
    forkFailures = ['error', 'error', 'error', 'error', 'error', 'error'];
    children[0]?.die();
    await until(() => settled.length === 1 && returned.length === 1, 3_000);
    expect(settled[0]?.[0].taskId).to.equal('stored');
    expect(settled[0]?.[1]).to.deep.include({ status: 'done', result: 'from the row', json: false });
    expect(returned.map((each) => [each.taskId, each.redelivered])).to.deep.equal([['unstored', false]]);
    expect(log).to.include('no worker could be started 3 times in a row: 1 held task(s) answered, 1 given to other workers');
    expect(slot.stats().problem).to.include('spawn EMFILE');
    await slot.stop();
  });

  it('fails its held tasks WORKER_LOST when it can neither start a worker nor read its file', async function () {
    const slot = await readySlot(1_000, 3);
    slot.assign(task('held', 60_000));
    await wait(5);
    findStored = () => Promise.reject(new Error('EMFILE: too many open files'));
    forkFailures = ['error', 'error', 'error', 'error', 'error'];
    children[0]?.die();
    await until(() => settled.length === 1, 3_000);
    const [, outcome] = settled[0] as [Task, Outcome];
    expect(outcome.status === 'failed' && outcome.error.code).to.equal('WORKER_LOST');
    expect(outcome.status === 'failed' && outcome.error.message).to.match(/could not be started .* its file could not be read \(EMFILE/);
    await slot.stop();
  });

  it('settles the good outcomes of a batch with a malformed one in it, and replaces the worker', async function () {
    const slot = await readySlot();
    for (const id of ['a', 'b', 'c']) slot.assign(task(id, 60_000));
    await wait(5);
    children[0]?.emit('message', {
      type: 'outcomes',
      outcomes: [
        { taskId: 'a', status: 'done', result: 'ra', json: false },
        // What a result that is a function became in JSON: no `result` at all.
        { taskId: 'b', status: 'done', json: true },
        { taskId: 'c', status: 'done', result: '{"n":1}', json: true },
      ],
    });
    expect(settled.map(([each, outcome]) => [each.taskId, outcome.status])).to.deep.equal([
      ['a', 'done'],
      ['c', 'done'],
    ]);
    expect(log).to.match(/worker pid 1000: it sent an outcome that is not one \(result is required\); killing it/);
    // Its worker is replaced; b is redelivered to the next one (answered from its row if stored).
    expect(children[0]?.signals).to.deep.equal(['SIGKILL']);
    expect(slot.availability()).to.equal('down');
    children[0]?.die();
    await wait(5);
    expect(slot.heldCount).to.equal(1);
    await slot.stop();
  });

  it('fails a JSON result that is not one valid line, instead of passing it into a reply', async function () {
    const slot = await readySlot();
    for (const id of ['broken', 'two-lines']) slot.assign(task(id, 60_000));
    await wait(5);
    children[0]?.emit('message', {
      type: 'outcomes',
      outcomes: [
        { taskId: 'broken', status: 'done', result: '{"a":', json: true },
        { taskId: 'two-lines', status: 'done', result: '[1,\n2]', json: true },
      ],
    });
    expect(settled.map(([, outcome]) => outcome.status === 'failed' && outcome.error.code)).to.deep.equal(['INTERNAL', 'INTERNAL']);
    await slot.stop();
  });

  it('gives tasks it could not store to other slots, and takes no new task', async function () {
    const slot = await readySlot(1_000, 3);
    slot.assign(task('t', 60_000));
    await wait(5);
    const error = { code: 'INTERNAL', message: 'could not store the result: SQLITE_READONLY' };
    children[0]?.emit('message', { type: 'outcomes', outcomes: [{ taskId: 't', status: 'unstored', error }] });
    expect(returned.map((each) => [each.taskId, each.storeFailures, each.redelivered])).to.deep.equal([['t', 1, false]]);
    expect(slot.availability()).to.equal('down');
    children[0]?.emit('message', { type: 'fatal', message: 'cannot store results in w1.db: SQLITE_READONLY' });
    (children[0] as FakeChild).connected = false;
    children[0]?.emit('exit', 3, null);
    expect(log).to.include('died (cannot store results in w1.db: SQLITE_READONLY)');
    expect(slot.stats().problem).to.include('SQLITE_READONLY');
    await slot.stop();
  });

  it('does not count a kill for a time limit as a young death, nor reset the count', async function () {
    const slot = await readySlot(1_000, 5);
    // A young death on its own.
    children[0]?.die();
    children[1]?.emit('message', { type: 'ready', pid: 1001, kinds: ['text'] });
    // Then a kill for a time limit, young too.
    slot.assign(task('slow', 10));
    await wait(5);
    children[1]?.emit('message', { type: 'running', tasks: [{ ordinal: 0, runningMs: 50 }] });
    slot.sweepTimeouts(performance.now());
    slot.sweepTimeouts(performance.now());
    children[1]?.die();
    expect(log).to.not.match(/keeps dying young/);
    children[2]?.emit('message', { type: 'ready', pid: 1002, kinds: ['text'] });
    // The next young death is the second in a row, not the third and not the first.
    children[2]?.die();
    expect(log).to.match(/keeps dying young \(2 in a row\); respawning in 100 ms/);
    await slot.stop();
  });

  it('reads what a worker sent just before its exit, even when the exit is reported first', async function () {
    const slot = await readySlot(1_000, 3);
    slot.assign(task('t', 60_000));
    await wait(5);
    const child = children[0] as FakeChild;
    // The kernel's word of the exit can come before the channel's last bytes are read.
    child.emit('exit', 3, null);
    const error = { code: 'INTERNAL', message: 'could not store the result: SQLITE_FULL' };
    child.emit('message', { type: 'outcomes', outcomes: [{ taskId: 't', status: 'unstored', error }] });
    child.emit('message', { type: 'fatal', message: 'cannot store results in w1.db: SQLITE_FULL' });
    child.connected = false;
    child.emit('disconnect');
    expect(log).to.include('died (cannot store results in w1.db: SQLITE_FULL) holding 0 task(s)');
    expect(returned.map((each) => each.taskId)).to.deep.equal(['t']);
    await slot.stop();
  });

  it('does not kill for a task that a sweep found overdue but whose outcome came before the next', async function () {
    const slot = await readySlot();
    slot.assign(task('late', 10));
    await wait(5);
    children[0]?.emit('message', { type: 'running', tasks: [{ ordinal: 0, runningMs: 50 }] });
    slot.sweepTimeouts(performance.now());
    children[0]?.emit('message', { type: 'outcomes', outcomes: [{ taskId: 'late', status: 'done', result: 'r', json: false }] });
    slot.sweepTimeouts(performance.now() + 100);
    expect(children[0]?.signals).to.deep.equal([]);
    expect(settled.map(([each, outcome]) => [each.taskId, outcome.status])).to.deep.equal([['late', 'done']]);
    await slot.stop();
  });
});
