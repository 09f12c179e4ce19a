import { expect } from 'chai';
import type { z } from 'zod';
import { describeIssues } from '../../shared/errors';
import { BUILTIN_KINDS } from '../../worker/builtin-kinds';
import {
  ClientMessageSchema,
  FromWorkerSchema,
  MAX_PAYLOAD_DEPTH,
  ServerMessageSchema,
  TaskOutcomeSchema,
  ToWorkerSchema,
  WatchdogReportSchema,
} from '../../shared/protocol';

function nested(depth: number): unknown {
  let value: unknown = 'leaf';
  for (let i = 0; i < depth; i += 1) value = [value];
  return value;
}

/** Checks that `schema` accepts each of `valid` and rejects each of `invalid` with that message. */
function check(schema: z.ZodType, valid: unknown[], invalid: [unknown, RegExp][]): void {
  for (const message of valid) {
    it(`accepts ${JSON.stringify(message).slice(0, 90)}`, function () {
      const result = schema.safeParse(message);
      expect(result.success, result.success ? '' : describeIssues(result.error.issues)).to.equal(true);
    });
  }
  for (const [message, reason] of invalid) {
    it(`rejects ${JSON.stringify(message).slice(0, 90)}`, function () {
      const result = schema.safeParse(message);
      expect(result.success).to.equal(false);
      if (!result.success) expect(describeIssues(result.error.issues)).to.match(reason);
    });
  }
}

describe('protocol schemas', function () {
  describe('client -> server', function () {
    check(
      ClientMessageSchema,
      [
        { type: 'submit', id: 'a1', kind: 'text', payload: 'tarea1' },
        { type: 'submit', payload: 'no id, kind defaults to text' },
        { type: 'submit', kind: 'fib', payload: { n: 30 }, timeoutMs: 5000 },
        { type: 'submit', kind: 'x', payload: nested(MAX_PAYLOAD_DEPTH) },
        { type: 'results' },
        { type: 'results', limit: 5, worker: 2, id: 'a1' },
        { type: 'stats' },
        { type: 'hello' },
        { type: 'hello', token: 'secret', client: 'ronda-cli' },
      ],
      [
        [{ type: 'sumbit', payload: 'x' }, /^type/],
        [{ payload: 'x' }, /^type/],
        [{ type: 'submit' }, /^payload is required$/],
        [{ type: 'submit', payload: 'x', extra: 1 }, /^message has unknown field "extra"$/],
        [{ type: 'submit', id: '', payload: 'x' }, /^id must be at least 1 character long$/],
        [{ type: 'submit', id: 7, payload: 'x' }, /^id must be a string, not a number$/],
        [{ type: 'submit', kind: 'Text!', payload: 'x' }, /^kind must be lowercase/],
        [{ type: 'submit', payload: 'x', timeoutMs: 'soon' }, /^timeoutMs must be a number, not a string$/],
        [{ type: 'submit', payload: nested(MAX_PAYLOAD_DEPTH + 1) }, /^payload must not nest deeper than 32 levels$/],
        [{ type: 'results', limit: 0 }, /^limit must be at least 1$/],
        [{ type: 'results', limit: 1001 }, /^limit must be at most 1000$/],
        [{ type: 'results', worker: 1.5 }, /^worker must be an int/],
        [{ type: 'stats', verbose: true }, /unknown field "verbose"/],
      ],
    );
  });

  describe('server -> client', function () {
    check(
      ServerMessageSchema,
      [
        { type: 'done', id: 'a1', taskId: 't-1', kind: 'text', worker: 2, result: 'r', ms: 0.4 },
        { type: 'failed', id: 'a1', kind: 'x', error: { code: 'UNKNOWN_KIND', message: 'm' } },
        { type: 'failed', id: 'a1', taskId: 't', kind: 'x', worker: 1, error: { code: 'HANDLER_FAILED', message: 'm' }, ms: 1 },
        { type: 'error', code: 'BAD_JSON', message: 'm' },
        { type: 'error', code: 'DUPLICATE_ID', message: 'm', id: 'a1' },
        { type: 'results', rows: [] },
        {
          type: 'results',
          rows: [{ task_id: 't', client_id: null, kind: 'text', task: 'x', result: 'r', status: 'done', worker: 1, timestamp: 'now' }],
        },
        {
          type: 'stats',
          workers: [{ slot: 1, pid: 5, state: 'ready', done: 1, failed: 0, inflight: 0, restarts: 0, uptimeMs: 9 }],
          queued: 0,
          connections: 1,
          accepted: 1,
          uptimeMs: 10,
        },
        { type: 'hello', server: 'ronda', protocol: 1, kinds: ['text'] },
      ],
      [
        [{ type: 'done', id: 'a1', kind: 'text', worker: 2, result: 'r', ms: 1 }, /^taskId is required$/],
        [{ type: 'failed', id: 'a1', kind: 'x', error: { code: 'NOPE', message: 'm' } }, /^error\.code must be one of/],
        [{ type: 'error', code: 'BAD_JSON' }, /^message is required$/],
        [{ type: 'results', rows: [{}] }, /^rows\.0\.task_id is required/],
      ],
    );
  });

  describe('primary -> worker', function () {
    check(
      ToWorkerSchema,
      [
        { type: 'tasks', first: 0, tasks: [{ taskId: 't1', kind: 'text', payload: 'x' }] },
        {
          type: 'tasks',
          first: 7,
          tasks: [
            { taskId: 't1', clientId: 'a', kind: 'text', payload: 'x', redelivered: true },
            { taskId: 't2', kind: 'fib', payload: { n: 3 }, redelivered: true, failWith: { code: 'TIMEOUT', message: 'm' } },
          ],
        },
        { type: 'shutdown' },
      ],
      [
        [{ type: 'tasks', first: 0, tasks: [] }, /^tasks must have at least 1 item$/],
        [{ type: 'tasks', tasks: [{ taskId: 't', kind: 'text', payload: 'x' }] }, /^first is required$/],
        [{ type: 'tasks', first: -1, tasks: [{ taskId: 't', kind: 'text', payload: 'x' }] }, /^first must be at least 0$/],
        [{ type: 'tasks', first: 0, tasks: [{ kind: 'text', payload: 'x' }] }, /^tasks\.0\.taskId is required$/],
        [{ type: 'tasks', first: 0, tasks: [{ taskId: 't', kind: 'text', payload: 'x', redelivered: false }] }, /redelivered/],
        [{ type: 'shutdown', now: true }, /unknown field "now"/],
      ],
    );
  });

  describe('worker -> primary', function () {
    check(
      FromWorkerSchema,
      [
        { type: 'ready', pid: 42, kinds: ['text', 'hash'] },
        { type: 'ready', pid: 42, kinds: ['text'], schemas: { text: { type: 'string' } } },
        // Each outcome is checked on its own where it arrives (TaskOutcomeSchema, below).
        { type: 'outcomes', outcomes: [{ taskId: 't1', status: 'lost' }] },
        { type: 'running', tasks: [{ ordinal: 3, runningMs: 120 }] },
        { type: 'fatal', message: 'cannot write /data/worker1.db' },
      ],
      [
        [{ type: 'ready', pid: 42, kinds: [] }, /^kinds must have at least 1 item$/],
        [{ type: 'ready', kinds: ['text'] }, /^pid is required$/],
        [{ type: 'outcomes', outcomes: [] }, /^outcomes must have at least 1 item$/],
        [{ type: 'running', tasks: [{ ordinal: 1.5, runningMs: 1 }] }, /^tasks\.0\.ordinal must be an int/],
        [{ type: 'fatal' }, /^message is required$/],
      ],
    );
    check(
      TaskOutcomeSchema,
      [
        { taskId: 't1', status: 'done', result: '{"any":["json"]}', json: true },
        { taskId: 't1', status: 'done', result: 'plain text', json: false },
        { taskId: 't1', status: 'failed', error: { code: 'BAD_PAYLOAD', message: 'm' } },
        { taskId: 't1', status: 'unstored', error: { code: 'INTERNAL', message: 'SQLITE_READONLY' } },
      ],
      [
        [{ taskId: 't1', status: 'lost' }, /status/],
        [{ taskId: 't1', status: 'failed' }, /^error is required$/],
        // A result that vanished in JSON (a handler returned a function): refused, alone.
        [{ taskId: 't1', status: 'done', json: true }, /^result is required$/],
        [{ taskId: 't1', status: 'done', result: 5, json: true }, /^result must be a string/],
      ],
    );
    check(
      WatchdogReportSchema,
      [{ type: 'running', ordinal: 0, runningMs: 150 }],
      [[{ type: 'running', ordinal: 0 }, /^runningMs is required$/]],
    );
  });
});

describe('describeIssues', function () {
  it('names one rule per field: the schema bound, not also the safe-integer range', function () {
    const result = BUILTIN_KINDS.fib?.schema.safeParse({ n: 1e308 });
    expect(result?.success).to.equal(false);
    if (result !== undefined && !result.success) {
      expect(describeIssues(result.error.issues, 'payload')).to.equal('payload.n must be at most 40');
    }
  });
});
