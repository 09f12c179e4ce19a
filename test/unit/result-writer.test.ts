import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encodeValue, openWorkerDatabase, readResults, type EncodedValue } from '../../shared/results-db';
import { close, exec, type Database } from '../../shared/sqlite';
import { MAX_ROWS_PER_INSERT, ResultWriter, type ResultRecord } from '../../worker/result-writer';
import { until } from '../helpers/cluster';
import { readRows } from '../helpers/db';

/** A lone row is bound, a batch travels as one JSON parameter: every value must come out as it went in. */
describe('worker ResultWriter (bound rows and JSON batches, a real SQLite file)', function () {
  let dir: string;
  let file: string;
  let db: Database;
  let writer: ResultWriter;
  let commits: { ids: string[]; error: Error | undefined }[];

  beforeEach(async function () {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ronda-unit-'));
    file = path.join(dir, 'worker3.db');
    ({ db } = await openWorkerDatabase(file));
    writer = new ResultWriter(db, 3);
    commits = [];
    writer.listen((records, error) => commits.push({ ids: records.map((record) => record.taskId), error }));
  });

  afterEach(async function () {
    await writer.close();
    await close(db);
    await rm(dir, { recursive: true, force: true });
  });

  const record = (taskId: string, payload: unknown, result: unknown, clientId?: string): ResultRecord => {
    const encoded = encodeValue(result) as EncodedValue;
    return {
      taskId,
      clientId,
      kind: 'text',
      task: encodeValue(payload) as EncodedValue,
      result: encoded,
      attempts: 1,
      status: 'done',
      outcome: { taskId, status: 'done', result: encoded.text, json: encoded.json === 1 },
    };
  };

  it('stores text, JSON, NUL, quotes, emoji and null client ids exactly, in order, in one commit', async function () {
    const records = [
      record('t1', 'plain', "Task 'plain' processed by worker 3", 'c1'),
      record('t2', { n: 5, nested: ['x', null] }, 42),
      record('t3', 'a\u0000b "quoted" \\ back', 'é😀\n\ttab'),
      record('t4', '{"looks":"like json"}', null, 'c4'),
    ];
    for (const each of records) writer.add(each);
    await writer.idle();

    expect(commits).to.deep.equal([{ ids: ['t1', 't2', 't3', 't4'], error: undefined }]);
    const rows = await readRows(file);
    expect(rows.map((row) => [row.task_id, row.client_id, row.kind, row.task, row.result, row.result_json, row.status, row.worker])).to.deep.equal([
      ['t1', 'c1', 'text', 'plain', "Task 'plain' processed by worker 3", 0, 'done', 3],
      ['t2', null, 'text', '{"n":5,"nested":["x",null]}', '42', 1, 'done', 3],
      ['t3', null, 'text', 'a\u0000b "quoted" \\ back', 'é😀\n\ttab', 0, 'done', 3],
      ['t4', 'c4', 'text', '{"looks":"like json"}', 'null', 1, 'done', 3],
    ]);
    expect(new Set(rows.map((row) => row.timestamp)).size).to.equal(1);
  });

  it('stores a lone surrogate as U+FFFD, as a bound parameter would', async function () {
    writer.add(record('s1', 'x\ud800y', '\udc00'));
    await writer.idle();
    const [row] = await readRows(file);
    expect([row?.task, row?.result]).to.deep.equal(['x\uFFFDy', '\uFFFD']);
  });

  it('stores a lone row (bound values) exactly as the same row in a batch (one JSON parameter)', async function () {
    const shapes: [unknown, unknown, string | undefined][] = [
      ['plain', "Task 'plain' processed by worker 3", 'c1'],
      [{ n: 5, nested: ['x', null] }, 42, undefined],
      ['a\u0000b "quoted" \\ back', 'é😀\n\ttab', undefined],
      ['x\ud800y', '\udc00', 'c\ud800'],
      [null, { deep: { er: [1.5, -0, 1e300] } }, ''],
    ];
    for (const [index, [payload, result, clientId]] of shapes.entries()) {
      writer.add({ ...record(`alone${index}`, payload, result, clientId), attempts: index + 1 });
      await writer.idle();
    }
    for (const [index, [payload, result, clientId]] of shapes.entries()) {
      writer.add({ ...record(`batch${index}`, payload, result, clientId), attempts: index + 1 });
    }
    await writer.idle();
    expect(commits.map((commit) => commit.ids.length)).to.deep.equal([1, 1, 1, 1, 1, shapes.length]);
    const rows = await readRows(file);
    const columns = (prefix: string) =>
      rows
        .filter((row) => row.task_id.startsWith(prefix))
        .map((row) => [row.task_id.slice(prefix.length), row.client_id, row.kind, row.task, row.result, row.result_json, row.status, row.worker, row.attempts]);
    expect(columns('alone')).to.have.length(shapes.length);
    expect(columns('alone')).to.deep.equal(columns('batch'));
  });

  it('stores a batch whose JSON would pass the longest string V8 can make, in INSERTs of one transaction', async function () {
    this.timeout(20_000);
    // Characters that JSON writes as six each: six such results of 17 Mi characters in one
    // parameter would be about 612 Mi characters, over V8's limit (about 512 Mi).
    const control = '\u0001'.repeat(17 * 1024 * 1024);
    // Small rows between them keep their places.
    for (let i = 0; i < 6; i += 1) {
      writer.add(record(`c${i}`, `p${i}`, control));
      writer.add(record(`s${i}`, `p${i}`, `small ${i}`));
    }
    await writer.idle();
    expect(commits.map((commit) => [commit.ids.length, commit.error?.message])).to.deep.equal([[12, undefined]]);
    const rows = await readRows(file);
    expect(rows.map((row) => [row.task_id, row.result === control || row.result])).to.deep.equal(
      Array.from({ length: 6 }, (_, i) => [[`c${i}`, true], [`s${i}`, `small ${i}`]]).flat(),
    );
  });

  it('fails a commit whose INSERT stored fewer rows than it was given, not one that only kept a stored row', async function () {
    writer.add(record('dup', 'first', 'one'));
    await writer.idle();
    writer.add(record('dup', 'again', 'two'));
    await writer.idle();
    expect(commits.map((commit) => commit.error)).to.deep.equal([undefined, undefined]);
    expect((await readRows(file)).map((row) => row.result)).to.deep.equal(['one']);

    // Handler code in the worker's process replaced JSON.stringify: of a batch's rows, only the
    // first goes in. The commit fails, and that row is taken out again (its task runs elsewhere).
    const stringify = JSON.stringify;
    JSON.stringify = ((value: unknown, ...rest: unknown[]) =>
      Array.isArray(value) && Array.isArray(value[0]) ? stringify(value.slice(0, 1)) : stringify(value, ...(rest as []))) as typeof JSON.stringify;
    try {
      for (const id of ['x1', 'x2', 'x3']) writer.add(record(id, 'p', 'r'));
      await writer.idle();
    } finally {
      JSON.stringify = stringify;
    }
    expect(commits[2]?.ids).to.deep.equal(['x1', 'x2', 'x3']);
    expect(commits[2]?.error?.message).to.equal('2 of 3 rows were not stored (the INSERT inserted 1: its input was not what the worker built)');
    expect((await readRows(file)).map((row) => row.task_id)).to.deep.equal(['dup']);
    writer.add(record('x4', 'p', 'r'));
    await writer.idle();
    expect((await readRows(file)).map((row) => row.task_id), 'the writer goes on').to.deep.equal(['dup', 'x4']);
  });

  it('holds what is added while corked, and commits it together once uncorked', async function () {
    writer.cork();
    writer.add(record('k1', 'a', 'b'));
    writer.add(record('k2', 'c', 'd'));
    for (let turn = 0; turn < 3; turn += 1) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(commits, 'nothing committed while corked').to.deep.equal([]);
    expect(await readRows(file)).to.deep.equal([]);
    writer.uncork();
    // The commit started in uncork(): what comes after it waits for the next one.
    writer.add(record('k2b', 'g', 'h'));
    await writer.idle();
    expect(commits).to.deep.equal([
      { ids: ['k1', 'k2'], error: undefined },
      { ids: ['k2b'], error: undefined },
    ]);
    // Uncorked, a record is committed on the next turn with no call.
    writer.add(record('k3', 'e', 'f'));
    await until(() => commits.length === 3, 2_000);
    expect(commits[2]?.ids).to.deep.equal(['k3']);
  });

  it('writes a batch larger than one INSERT in one transaction, and keeps the first row of a repeated id', async function () {
    const count = MAX_ROWS_PER_INSERT * 2 + 7;
    for (let i = 0; i < count; i += 1) writer.add(record(`b${i}`, `payload ${i}`, `result ${i}`));
    writer.add(record('b0', 'again', 'second write'));
    await writer.idle();

    expect(commits.every((commit) => commit.error === undefined)).to.equal(true);
    const rows = await readRows(file);
    expect(rows).to.have.length(count);
    expect(rows.map((row) => row.task_id)).to.deep.equal(Array.from({ length: count }, (_, i) => `b${i}`));
    expect(rows[0]).to.include({ task: 'payload 0', result: 'result 0' });
  });

  it('stores none of a multi-INSERT batch when its last INSERT fails, and reports the whole batch lost', async function () {
    const count = MAX_ROWS_PER_INSERT * 2 + 7;
    const last = `b${count - 1}`;
    // INSERT OR IGNORE skips constraint failures, but not a trigger's RAISE(ABORT): a real error,
    // in the third INSERT of the batch, after two have run.
    await exec(db, `CREATE TEMP TRIGGER refuse_last BEFORE INSERT ON results WHEN NEW.task_id = '${last}'
      BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`);
    for (let i = 0; i < count; i += 1) writer.add(record(`b${i}`, `payload ${i}`, `result ${i}`));
    await writer.idle();

    expect(commits).to.have.length(1);
    expect(commits[0]?.ids).to.have.length(count);
    expect(commits[0]?.error?.message).to.match(/refused by the test/);
    expect(await readRows(file), 'rows of the first two INSERTs, which must be rolled back').to.deep.equal([]);

    // The connection is usable afterwards: no transaction was left open.
    await exec(db, 'DROP TRIGGER refuse_last');
    writer.add(record('after', 'p', 'r'));
    await writer.idle();
    expect((await readRows(file)).map((row) => row.task_id)).to.deep.equal(['after']);
  });

  it('keeps a results reply within 4 MiB of text across all files, newest first, but always gives the newest', async function () {
    const big = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 6; i += 1) writer.add(record(`big${i}`, big, big));
    await writer.idle();
    // A second worker's file, written later: its rows are the newest.
    const other = await openWorkerDatabase(path.join(dir, 'worker1.db'));
    const otherWriter = new ResultWriter(other.db, 1);
    await new Promise((resolve) => setTimeout(resolve, 5));
    otherWriter.add(record('small', 'a', 'b'));
    otherWriter.add(record('half', 'y'.repeat(512 * 1024), 'z'.repeat(512 * 1024)));
    await otherWriter.close();
    await close(other.db);

    const rows = await readResults(dir, { limit: 1000 });
    // 'half' (1 MiB) and 'small' come first; then 2 MiB rows while the total stays within 4 MiB.
    expect(rows.map((row) => row.task_id)).to.deep.equal(['half', 'small', 'big5']);
    expect((await readResults(dir, { limit: 2 })).map((row) => row.task_id)).to.deep.equal(['half', 'small']);
    expect((await readResults(dir, { limit: 1, taskId: 'big0' }))[0]?.task).to.equal(big);

    const huge = 'h'.repeat(3 * 1024 * 1024);
    writer.add(record('huge', huge, huge));
    await writer.idle();
    expect((await readResults(dir, { limit: 10 })).map((row) => row.task_id), 'the newest row, alone over the budget').to.deep.equal(['huge']);
  });

});
