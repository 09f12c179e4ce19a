import { expect } from 'chai';
import { Chalk } from 'chalk';
import { PassThrough } from 'node:stream';
import {
  describeTask,
  describeWorkerFiles,
  formatDuration,
  formatMs,
  formatReply,
  formatStoredResult,
  MAX_LABEL_CHARS,
  resultColumns,
  truncate,
} from '../../client/format';
import { Output } from '../../client/output';
import { showResults, showStats } from '../../client/views';
import { paintSlot } from '../../shared/logger';
import type { ResultRow } from '../../shared/protocol';

const plain = new Chalk({ level: 0 });
const colored = new Chalk({ level: 1 });

/** An Output over in-memory streams, and what it wrote. */
function capture(isTTY = false) {
  const stdout = Object.assign(new PassThrough(), { isTTY, columns: 80 });
  const stderr = Object.assign(new PassThrough(), { isTTY });
  let out = '';
  let err = '';
  stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
  stderr.setEncoding('utf8').on('data', (text: string) => (err += text));
  const output = new Output({ stdout, stderr }, {});
  return { output, out: () => out, err: () => err };
}

describe('client presentation (client/format.ts, client/output.ts)', function () {
  it('shows a done reply with the worker, the task, the result and the time', function () {
    const reply = { type: 'done', id: 'c1', taskId: 't1', kind: 'text', worker: 2, result: "Task 'hola' processed by worker 2", ms: 3.14159 } as const;
    expect(formatReply(plain, 'hola', reply)).to.equal("[worker 2] hola -> Task 'hola' processed by worker 2 (3.14 ms)");
  });

  it('colors the worker label exactly as the server log does', function () {
    const reply = { type: 'done', id: 'c1', taskId: 't1', kind: 'hash', worker: 3, result: 'ab', ms: 12 } as const;
    const line = formatReply(colored, 'hash x', reply);
    expect(line.startsWith(paintSlot(colored, 3, '[worker 3]'))).to.equal(true);
    expect(paintSlot(colored, 3, '[worker 3]')).to.not.equal('[worker 3]');
  });

  it('shows a failure with its code and message', function () {
    const reply = {
      type: 'failed',
      id: 'c2',
      kind: 'fib',
      worker: 1,
      error: { code: 'BAD_PAYLOAD', message: 'payload.n must be at most 40' },
      ms: 0.5,
    } as const;
    expect(formatReply(plain, 'fib {"n":99}', reply)).to.equal(
      '[worker 1] fib {"n":99} -> failed BAD_PAYLOAD: payload.n must be at most 40 (0.50 ms)',
    );
  });

  it('formats tasks, times and long cells for people', function () {
    expect(describeTask('text', 'hola')).to.equal('hola');
    expect(describeTask('sleep', { ms: 5 })).to.equal('sleep {"ms":5}');
    // A task of a megabyte is not printed back whole in its reply line.
    expect(describeTask('text', 'x'.repeat(2_000_000))).to.equal(`${'x'.repeat(MAX_LABEL_CHARS - 1)}…`);
    expect(describeTask('hash', 'y'.repeat(500))).to.have.length(MAX_LABEL_CHARS);
    expect(formatMs(0.4)).to.equal('0.40 ms');
    expect(formatMs(250.4)).to.equal('250 ms');
    expect(formatMs(1500)).to.equal('1.50 s');
    expect(formatDuration(59_999)).to.equal('59s');
    expect(formatDuration(192_000)).to.equal('3m 12s');
    expect(formatDuration(7_500_000)).to.equal('2h 05m');
    expect(truncate('a\nb')).to.equal('a b');
    expect(truncate('x'.repeat(60), 10)).to.equal(`${'x'.repeat(9)}…`);
  });

  it('shows a stored failure as CODE: message', function () {
    const row: ResultRow = {
      task_id: 't9', client_id: null, kind: 'fib', task: '{"n":99}', status: 'failed', worker: 1,
      result: { code: 'BAD_PAYLOAD', message: 'payload.n must be at most 40' }, timestamp: '2026-01-02T03:04:05.678Z',
    };
    expect(formatStoredResult(row)).to.equal('BAD_PAYLOAD: payload.n must be at most 40');
  });

  it('prints a stats table with one row per worker and a summary, and results newest first', function () {
    const { output, out } = capture();
    showStats(output, {
      type: 'stats',
      workers: [
        { slot: 1, pid: 101, state: 'ready', done: 12, failed: 1, inflight: 0, restarts: 0, uptimeMs: 61_000 },
        { slot: 2, pid: null, state: 'backoff', done: 3, failed: 0, inflight: 0, restarts: 2, uptimeMs: 0 },
      ],
      queued: 4, connections: 2, accepted: 20, uptimeMs: 3_600_000,
    });
    const lines = out().trimEnd().split('\n');
    expect(lines[0]).to.match(/^worker\s+pid\s+state\s+done\s+failed\s+in flight\s+restarts\s+uptime$/);
    expect(lines[1]).to.match(/^\s+1\s+101\s+ready\s+12\s+1\s+0\s+0\s+1m 01s$/);
    expect(lines[2]).to.match(/^\s+2\s+-\s+backoff\s+3\s+0\s+0\s+2\s+-$/);
    expect(lines[3]).to.equal('queued 4, accepted 20, 2 clients connected, server up 1h 00m');

    const empty = capture();
    showResults(empty.output, []);
    expect(empty.out()).to.equal('no results stored yet\n');

    const row = (n: number, worker: number): ResultRow => ({
      task_id: `t${n}`, client_id: null, kind: 'text', task: `tarea${n}`, status: 'done', worker,
      result: `Task 'tarea${n}' processed by worker ${worker}`, timestamp: `2026-01-02T03:04:0${n}.000Z`,
    });
    const results = capture();
    showResults(results.output, [row(2, 2), row(1, 1)]);
    const table = results.out().trimEnd().split('\n');
    expect(table[0]).to.match(/^worker\s+task id\s+kind\s+task\s+status\s+result\s+time \(UTC\)$/);
    expect(table[1]).to.match(/^\s+2\s+t2\s+text\s+tarea2\s+done\s+Task 'tarea2' processed by worker 2\s+03:04:02\.000$/);
    expect(table[2]).to.match(/^\s+1\s+t1\s+text\s+tarea1\s+done\s+/);
  });

  it('shows each stored row as done or failed in words, so that failures show without color too', function () {
    const failed: ResultRow = {
      task_id: 't3', client_id: null, kind: 'fib', task: '{"n":99}', status: 'failed', worker: 1,
      result: { code: 'BAD_PAYLOAD', message: 'payload.n must be at most 40' }, timestamp: '2026-01-02T03:04:05.678Z',
    };
    const { output, out } = capture();
    showResults(output, [failed]);
    expect(out().trimEnd().split('\n')[1]).to.match(/^\s+1\s+t3\s+fib\s+\{"n":99\}\s+failed\s+BAD_PAYLOAD: payload\.n must be at most 40\s+03:04:05\.678$/);
    const status = resultColumns(colored).find((column) => column.header === 'status');
    expect(status?.value(failed)).to.equal(colored.red('failed'));
  });

  it('names the worker files a folder has, runs of them as a range', function () {
    expect(describeWorkerFiles([1, 2, 3])).to.equal('worker1.db to worker3.db');
    expect(describeWorkerFiles([2])).to.equal('worker2.db');
    expect(describeWorkerFiles([1, 2])).to.equal('worker1.db, worker2.db');
    expect(describeWorkerFiles([5, 1, 2, 3, 7])).to.equal('worker1.db to worker3.db, worker5.db, worker7.db');
  });

  it('draws a progress bar only on a terminal, and clears it before the next line', function () {
    const piped = capture(false);
    piped.output.progress(5, 10, 'replies');
    piped.output.line('done');
    expect(piped.out()).to.equal('done\n');

    const tty = capture(true);
    tty.output.progress(5, 10, 'replies');
    tty.output.line('done');
    expect(tty.out()).to.equal(`\r[${'#'.repeat(15)}${'-'.repeat(15)}] 5/10 replies\r\u001b[2Kdone\n`);
  });

  it('prints above an attached prompt: hide, the line, show again', function () {
    const { output, out, err } = capture();
    const calls: string[] = [];
    output.attachPrompt({ hide: () => calls.push('hide'), show: () => calls.push('show') });
    output.line('one');
    output.error('two');
    output.attachPrompt(undefined);
    output.line('three');
    expect(calls).to.deep.equal(['hide', 'show', 'hide', 'show']);
    expect(out()).to.equal('one\nthree\n');
    expect(err()).to.equal('two\n');
  });
});
