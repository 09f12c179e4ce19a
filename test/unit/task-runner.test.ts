import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import type { FromWorker, TaskOutcome, TaskSpec } from '../../shared/protocol';
import { openWorkerDatabase } from '../../shared/results-db';
import { close, type Database } from '../../shared/sqlite';
import { BUILTIN_KINDS } from '../../worker/builtin-kinds';
import { ResultWriter } from '../../worker/result-writer';
import { MAX_ERROR_MESSAGE_CHARS, MAX_RESULT_CHARS, TaskRunner } from '../../worker/task-runner';
import type { TaskKind } from '../../worker/task-kind';
import { until } from '../helpers/cluster';
import { readRows } from '../helpers/db';

describe('worker TaskRunner and ResultWriter (a real SQLite file)', function () {
  let dir: string;
  let file: string;
  let db: Database;
  let sent: FromWorker[];
  let runs: number;
  let runner: TaskRunner;

  const kinds = new Map<string, TaskKind>([
    ...Object.entries(BUILTIN_KINDS),
    ['count', { schema: z.string(), run: (text: unknown) => ((runs += 1), `counted ${String(text)}`) }],
    ['boom', { schema: z.unknown(), run: () => { throw new Error('boom'); } }],
    ['bigint', { schema: z.unknown(), run: () => 10n }],
  ]);

  beforeEach(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ronda-unit-'));
    file = path.join(dir, 'worker1.db');
    ({ db } = await openWorkerDatabase(file));
    sent = [];
    runs = 0;
    sentSoFar = 0;
    runner = new TaskRunner(1, kinds, new ResultWriter(db, 1), (message) => sent.push(message));
  });

  afterEach(async function () {
    await runner.close();
    await close(db);
    await rm(dir, { recursive: true, force: true });
  });

  const spec = (taskId: string, kind: string, payload: unknown, extra: Partial<TaskSpec> = {}): TaskSpec => ({
    taskId,
    kind,
    payload,
    ...extra,
  });

  function outcomes(): TaskOutcome[] {
    return sent.flatMap((message) => (message.type === 'outcomes' ? (message.outcomes as TaskOutcome[]) : []));
  }

  /** Sends tasks as the primary does, numbering them on from the last message. */
  let sentSoFar = 0;
  function handle({ tasks }: { tasks: TaskSpec[] }): void {
    runner.handle({ type: 'tasks', first: sentSoFar, tasks });
    sentSoFar += tasks.length;
  }

  it('commits the tasks of one message together and reports them in one message', async function () {
    handle({ tasks: Array.from({ length: 50 }, (_, i) => spec(`t${i}`, 'text', `tarea${i}`)) });
    await runner.idle();
    expect(sent).to.have.length(1);
    expect(outcomes().map((o) => o.taskId)).to.deep.equal(Array.from({ length: 50 }, (_, i) => `t${i}`));
    expect(outcomes()[7]).to.deep.equal({ taskId: 't7', status: 'done', result: "Task 'tarea7' processed by worker 1", json: false });
    const rows = await readRows(file);
    expect(rows).to.have.length(50);
    expect(rows[7]).to.include({ task_id: 't7', task: 'tarea7', status: 'done', worker: 1, kind: 'text' });
    expect(rows[7]?.timestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it('reports a batch larger than one INSERT only once all of it is stored', async function () {
    handle({ tasks: Array.from({ length: 1234 }, (_, i) => spec(`t${i}`, 'hash', `x${i}`)) });
    await runner.idle();
    // idle() resolves on the report; the rows must be in the file by then.
    expect(await readRows(file)).to.have.length(1234);
    // Run in slices of SLICE_MS, so in one commit or a few; each reported after its own.
    expect(outcomes()).to.have.length(1234);
  });

  it('commits a lone task at once, without waiting for a batch to fill', async function () {
    // If the writer waited for more records, idle() would never resolve and the test would time out.
    handle({ tasks: [spec('solo', 'text', 'one')] });
    await runner.idle();
    expect(outcomes()).to.deep.equal([{ taskId: 'solo', status: 'done', result: "Task 'one' processed by worker 1", json: false }]);
  });

  it('does not run a redelivered task that is stored already; returns the stored outcome', async function () {
    handle({ tasks: [spec('once', 'count', 'a')] });
    await runner.idle();
    expect(runs).to.equal(1);
    sent = [];
    handle({ tasks: [spec('once', 'count', 'a', { redelivered: true }), spec('new', 'count', 'b', { redelivered: true })] });
    await runner.idle();
    expect(runs).to.equal(2);
    expect(outcomes()).to.deep.include({ taskId: 'once', status: 'done', result: 'counted a', json: false });
    expect(outcomes()).to.deep.include({ taskId: 'new', status: 'done', result: 'counted b', json: false });
    expect((await readRows(file)).map((row) => row.task_id)).to.deep.equal(['once', 'new']);
  });

  it('stores failWith unless a result is stored already', async function () {
    handle({ tasks: [spec('kept', 'text', 'k')] });
    await runner.idle();
    const lost = { code: 'WORKER_LOST', message: 'gone' } as const;
    handle({
      tasks: [spec('kept', 'text', 'k', { redelivered: true, failWith: lost }), spec('lost', 'count', 'x', { redelivered: true, failWith: lost })],
    });
    await runner.idle();
    expect(runs).to.equal(0);
    const rows = await readRows(file);
    expect(rows.map((row) => [row.task_id, row.status])).to.deep.equal([['kept', 'done'], ['lost', 'failed']]);
    expect(JSON.parse(rows[1]?.result as string)).to.deep.equal(lost);
    expect(outcomes().find((o) => o.taskId === 'lost')).to.deep.equal({ taskId: 'lost', status: 'failed', error: lost });
  });

  it('stores failures: bad payload, a throwing handler, a result that is not JSON, an unknown kind', async function () {
    handle({
      tasks: [spec('f1', 'fib', { n: 99 }), spec('f2', 'boom', null), spec('f3', 'bigint', null), spec('f4', 'nope', 1), spec('ok', 'fib', { n: 10 })],
    });
    await runner.idle();
    const byId = new Map(outcomes().map((o) => [o.taskId, o]));
    expect(byId.get('f1')).to.deep.equal({ taskId: 'f1', status: 'failed', error: { code: 'BAD_PAYLOAD', message: 'payload.n must be at most 40' } });
    expect(byId.get('f2')).to.deep.equal({ taskId: 'f2', status: 'failed', error: { code: 'HANDLER_FAILED', message: 'boom' } });
    expect(byId.get('f3')).to.have.nested.property('error.code', 'HANDLER_FAILED');
    expect(byId.get('f4')).to.have.nested.property('error.code', 'UNKNOWN_KIND');
    expect(byId.get('ok')).to.deep.equal({ taskId: 'ok', status: 'done', result: '55', json: true });
    const rows = await readRows(file);
    expect(rows.map((row) => row.status)).to.deep.equal(['failed', 'failed', 'failed', 'failed', 'done']);
  });

  it('runs async kinds concurrently and reports each when it is stored', async function () {
    // Both gated tasks must have started before either is let go: run one after the other, the
    // second would never start and the test would time out.
    let started = 0;
    let open: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (open = resolve));
    kinds.set('gated', { schema: z.string(), run: async (text: unknown) => ((started += 1), await gate, text) });
    handle({ tasks: [spec('g1', 'gated', 'a'), spec('g2', 'gated', 'b'), spec('t', 'text', 'fast')] });
    await until(() => started === 2 && outcomes().length === 1, 2_000, 'both gated tasks to start');
    expect(outcomes().map((o) => o.taskId)).to.deep.equal(['t']);
    open();
    await runner.idle();
    kinds.delete('gated');
    expect(outcomes().map((o) => o.taskId)).to.have.members(['g1', 'g2', 't']);
    expect(outcomes().find((o) => o.taskId === 'g2')).to.deep.equal({ taskId: 'g2', status: 'done', result: 'b', json: false });
  });


  it('answers HANDLER_FAILED for what JSON cannot hold or a handler throws oddly, and never dies of it', async function () {
    let calls = 0;
    const changing = { toJSON: () => ({ call: (calls += 1) }) };
    const noPrototype = Object.create(null) as object;
    const badMessage = new Error('x');
    Object.defineProperty(badMessage, 'message', { get: () => { throw new Error('getter'); } });
    const odd = new Map<string, TaskKind>([
      ['fn', { schema: z.unknown(), run: () => () => 1 }],
      ['sym', { schema: z.unknown(), run: () => Symbol('s') }],
      ['async-fn', { schema: z.unknown(), run: async () => () => 1 }],
      ['changing', { schema: z.unknown(), run: () => changing }],
      ['surrogate', { schema: z.unknown(), run: () => 'a\ud800b' }],
      ['huge', { schema: z.unknown(), run: () => 'x'.repeat(MAX_RESULT_CHARS + 1) }],
      ['null-proto', { schema: z.unknown(), run: () => { throw noPrototype; } }],
      ['bad-message', { schema: z.unknown(), run: () => { throw badMessage; } }],
      ['reject-null-proto', { schema: z.unknown(), run: () => Promise.reject(noPrototype) }],
      ['bad-then', { schema: z.unknown(), run: () => ({ then: () => { throw new Error('then threw'); } }) }],
    ]);
    runner = new TaskRunner(1, odd, new ResultWriter(db, 1), (message) => sent.push(message));
    const ids = [...odd.keys()];
    handle({ tasks: ids.map((kind) => spec(kind, kind, null)) });
    await runner.idle();
    const byId = new Map(outcomes().map((o) => [o.taskId, o]));
    const code = (id: string) => {
      const outcome = byId.get(id);
      return outcome?.status === 'failed' ? outcome.error.code : outcome?.status;
    };
    for (const id of ['fn', 'sym', 'async-fn', 'huge', 'null-proto', 'bad-message', 'reject-null-proto', 'bad-then']) {
      expect(code(id), id).to.equal('HANDLER_FAILED');
    }
    expect(byId.get('fn')).to.have.nested.property('error.message', 'the result is not JSON: the handler returned a function');
    expect(byId.get('null-proto')).to.have.nested.property('error.message', 'the handler failed');
    expect(byId.get('bad-then')).to.have.nested.property('error.message', 'then threw');

    // The reply is the stored text itself: a toJSON that answers differently each time, and a lone
    // surrogate (stored as U+FFFD), come out the same in both.
    const rows = new Map((await readRows(file)).map((row) => [row.task_id, row]));
    expect(rows.size).to.equal(ids.length);
    for (const id of ['changing', 'surrogate']) {
      const outcome = byId.get(id);
      expect(outcome?.status, id).to.equal('done');
      if (outcome?.status === 'done') expect(outcome.result, id).to.equal(rows.get(id)?.result);
    }
    expect(calls, 'toJSON called once: the value is encoded once').to.equal(1);
    expect(rows.get('surrogate')?.result).to.equal('a\uFFFDb');
  });

  it('describes a payload that fails an odd schema, within bounds, or fails the task when describing it throws', async function () {
    const odd = new Map<string, TaskKind>([
      ['big-literal', { schema: z.literal(5n), run: () => 'never' }],
      ['long-message', { schema: z.unknown().superRefine((_, ctx) => ctx.addIssue({ code: 'custom', message: 'm'.repeat(100_000) })), run: () => 'never' }],
      // A path whose text cannot be had: zod keeps it, describing it throws.
      ['bad-path', {
        schema: z.unknown().superRefine((_, ctx) => ctx.addIssue({ code: 'custom', message: 'bad', path: [{ toString: () => { throw new Error('no path'); } } as unknown as string] })),
        run: () => 'never',
      }],
    ]);
    runner = new TaskRunner(1, odd, new ResultWriter(db, 1), (message) => sent.push(message));
    handle({ tasks: [...odd.keys()].map((kind) => spec(kind, kind, 'x')) });
    await runner.idle();
    const byId = new Map(outcomes().map((o) => [o.taskId, o]));
    expect(byId.get('big-literal')).to.deep.equal({ taskId: 'big-literal', status: 'failed', error: { code: 'BAD_PAYLOAD', message: 'payload must be one of 5n' } });
    const long = byId.get('long-message');
    expect(long?.status === 'failed' && long.error.code).to.equal('BAD_PAYLOAD');
    expect(long?.status === 'failed' && long.error.message.length).to.equal(MAX_ERROR_MESSAGE_CHARS + 1);
    expect(byId.get('bad-path')).to.deep.equal({
      taskId: 'bad-path',
      status: 'failed',
      error: { code: 'HANDLER_FAILED', message: 'the payload schema of "bad-path" threw: no path' },
    });
  });

  it('ends a task with INTERNAL whatever starting it throws, and runs the rest', async function () {
    const cursed = new (class extends Map<string, TaskKind> {
      override get(name: string): TaskKind | undefined {
        if (name === 'cursed') throw new Error('the kinds broke');
        return super.get(name);
      }
    })(kinds);
    runner = new TaskRunner(1, cursed, new ResultWriter(db, 1), (message) => sent.push(message));
    handle({ tasks: [spec('c', 'cursed', 'x'), spec('n', 'count', 'y')] });
    await runner.idle();
    expect(outcomes()).to.deep.equal([
      { taskId: 'c', status: 'failed', error: { code: 'INTERNAL', message: 'the worker could not run the task: the kinds broke' } },
      { taskId: 'n', status: 'done', result: 'counted y', json: false },
    ]);
  });

  it('fails a task whose payload schema throws, runs the rest of its slice, and stores on', async function () {
    const trapped = new Map<string, TaskKind>([
      ...kinds,
      ['trap', { schema: z.string().refine(() => { throw new Error('schema trap'); }), run: () => 'never' }],
    ]);
    runner = new TaskRunner(1, trapped, new ResultWriter(db, 1), (message) => sent.push(message));
    handle({ tasks: [spec('a', 'count', 'x'), spec('t', 'trap', 'y'), spec('b', 'count', 'z')] });
    handle({ tasks: [spec('later', 'count', 'w')] });
    await runner.idle();
    const byId = new Map(outcomes().map((o) => [o.taskId, o]));
    expect(byId.get('t')).to.deep.equal({
      taskId: 't',
      status: 'failed',
      error: { code: 'HANDLER_FAILED', message: 'the payload schema of "trap" threw: schema trap' },
    });
    expect(['a', 'b', 'later'].map((id) => byId.get(id)?.status)).to.deep.equal(['done', 'done', 'done']);
    expect((await readRows(file)).map((row) => row.task_id).sort()).to.deep.equal(['a', 'b', 'later', 't']);
  });
});
