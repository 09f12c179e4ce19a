import { expect } from 'chai';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { Logger } from '../../shared/logger';
import type { StoredOutcome } from '../../shared/results-db';
import type { Outcome, Task } from '../../server/task';
import { WorkerSlot, type SlotEvents } from '../../server/worker-slot';

/** A worker process that does only what the test makes it do. */
class FakeChild extends EventEmitter {
  readonly pid: number;
  connected = true;
  readonly signals: string[] = [];
  readonly sent: unknown[] = [];
  constructor(pid: number) {
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

  function makeSlot(readyTimeoutMs: number): WorkerSlot {
    const stream = new PassThrough();
    stream.setEncoding('utf8').on('data', (text: string) => (log += text));
    const events: SlotEvents = {
      ready: () => undefined,
      settled: (_slot, outcomes) => settled.push(...outcomes),
      returned: (_slot, tasks) => returned.push(...tasks),
      changed: () => undefined,
    };
    return new WorkerSlot({
      slot: 1,
      args: [],
      endGroup: (pid) => endedGroups.push(pid),
      findStored: (taskIds) => findStored(taskIds),
      maxInflight: 4,
      maxAttempts: 1,
      readyTimeoutMs,
      logger: new Logger({ stream, env: { NO_COLOR: '1' } }),
      events,
      spawn: () => {
        const child = new FakeChild(1000 + children.length);
        children.push(child);
        return child as unknown as ChildProcess;
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
  });

  const task = (taskId: string, timeoutMs: number): Task => ({
    taskId,
    clientId: undefined,
    kind: 'text',
    payload: taskId,
    chars: 10,
    timeoutMs,
    owner: { label: '#1', settle: () => undefined },
    acceptedAt: 0,
    ordinal: -1,
    startedAt: undefined,
    deaths: 0,
    redelivered: false,
    failWith: undefined,
    storeFailures: 0,
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
    slot.sweepTimeouts(performance.now() + 20);
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
});
