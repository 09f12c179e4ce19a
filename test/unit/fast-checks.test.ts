import { expect } from 'chai';
import type { z } from 'zod';
import { fastOutcome, fastOutcomes, fastSubmit, fastTaskReply, fastTasks } from '../../shared/fast-checks';
import { FromWorkerSchema, ServerMessageSchema, SubmitSchema, TaskOutcomeSchema, ToWorkerSchema } from '../../shared/protocol';

/** Values that break one field or another: wrong types, bounds, shapes. */
const ODD: unknown[] = [
  null,
  '',
  'x',
  'x'.repeat(128),
  'x'.repeat(129),
  'Upper',
  'a'.repeat(33),
  0,
  -1,
  1.5,
  2 ** 60,
  1e308,
  true,
  false,
  {},
  [],
  [1],
  { code: 'BAD_PAYLOAD', message: 'm' },
  { code: 'NOPE', message: 'm' },
  { code: 'BAD_PAYLOAD', message: 'm', extra: 1 },
  { code: 'BAD_PAYLOAD' },
  'done',
  'failed',
  'submit',
  'tasks',
  'outcomes',
];

function deep(levels: number): unknown {
  let value: unknown = 'leaf';
  for (let level = 0; level < levels; level += 1) value = [value];
  return value;
}

/** The valid message, each key removed, each key set to each odd value, one unknown key added. */
function variants(base: Record<string, unknown>): unknown[] {
  const out: unknown[] = [base];
  for (const key of Object.keys(base)) {
    const { [key]: _removed, ...rest } = base;
    out.push(rest);
    for (const odd of ODD) out.push({ ...base, [key]: odd });
  }
  out.push({ ...base, surprise: 1 }, { ...base, __proto__: 1 }, null, [], 'text', 7);
  // Through JSON, as the checks meet them.
  return out.map((value) => JSON.parse(JSON.stringify(value) ?? 'null'));
}

/**
 * Holds `fast` to `schema`: whatever fast accepts, the schema accepts, with the same value; and
 * fast accepts each of `mustAccept` (or it would be no faster).
 */
function holdsTo(fast: (raw: unknown) => unknown, schema: z.ZodType, bases: Record<string, unknown>[], mustAccept: unknown[]): number {
  let checked = 0;
  for (const base of bases) {
    for (const value of variants(base)) {
      const quick = fast(value);
      const parsed = schema.safeParse(value);
      if (quick !== undefined) {
        expect(parsed.success, `fast accepted what the schema refuses: ${JSON.stringify(value)}`).to.equal(true);
        expect(quick, JSON.stringify(value)).to.deep.equal(parsed.data);
      }
      checked += 1;
    }
  }
  for (const value of mustAccept) expect(fast(JSON.parse(JSON.stringify(value))), JSON.stringify(value)).not.to.equal(undefined);
  return checked;
}

describe('fast checks (shared/fast-checks.ts) hold to the zod schemas', function () {
  it('submit: SubmitSchema, kind defaulted, payload depth bounded', function () {
    const bases = [
      { type: 'submit', id: 'a1', kind: 'text', payload: 'hola', timeoutMs: 1000, retries: 2 },
      { type: 'submit', payload: { n: 30, list: [1, 2, { x: null }] } },
      { type: 'submit', kind: 'fib', payload: deep(32) },
      { type: 'submit', kind: 'fib', payload: deep(33) },
    ];
    const checked = holdsTo(fastSubmit, SubmitSchema, bases, [bases[0], bases[1], bases[2], { type: 'submit', payload: null }]);
    expect(fastSubmit({ type: 'submit', payload: deep(33) })).to.equal(undefined);
    expect(fastSubmit({ type: 'submit', payload: 'x' })).to.deep.equal({ type: 'submit', kind: 'text', payload: 'x' });
    expect(checked).to.be.above(400);
  });

  it('outcomes: TaskOutcomeSchema for each status, and the outcomes message', function () {
    const error = { code: 'HANDLER_FAILED', message: 'boom' };
    const bases = [
      { taskId: 't1', status: 'done', result: '"x"', json: true },
      { taskId: 't1', status: 'failed', error },
      { taskId: 't1', status: 'failed', error, attempts: 2 },
      { taskId: 't1', status: 'unstored', error },
      { taskId: 't1', status: 'retry', error },
    ];
    holdsTo(fastOutcome, TaskOutcomeSchema, bases, bases);
    const message = { type: 'outcomes', outcomes: [bases[0]] };
    holdsTo(fastOutcomes, FromWorkerSchema, [message, { type: 'outcomes', outcomes: [] }], [message]);
  });

  it('tasks: ToWorkerSchema with every field a spec may carry', function () {
    const spec = { taskId: 't1', clientId: 'c1', kind: 'text', payload: 'p' };
    const full = {
      taskId: 't2',
      kind: 'fib',
      payloadJson: '{"n":3}',
      redelivered: true,
      failWith: { code: 'TIMEOUT', message: 'late' },
      retry: true,
      attempt: 2,
    };
    const bases = [
      { type: 'tasks', first: 0, tasks: [spec] },
      { type: 'tasks', first: 7, tasks: [spec, full] },
    ];
    holdsTo(fastTasks, ToWorkerSchema, bases, bases);
    // A bad spec anywhere in the batch is left to zod.
    for (const value of variants(full)) {
      const message = { type: 'tasks', first: 1, tasks: [spec, value] };
      if (fastTasks(message) !== undefined) expect(ToWorkerSchema.safeParse(message).success, JSON.stringify(value)).to.equal(true);
    }
  });

  it('replies: done and failed as ServerMessageSchema gives them', function () {
    const bases = [
      { type: 'done', id: 'a', taskId: 't', kind: 'text', worker: 1, result: 'r', ms: 0.4, attempts: 2 },
      { type: 'done', id: 'a', taskId: 't', kind: 'text', worker: 1, result: null, ms: 0.4 },
      { type: 'failed', id: 'a', taskId: 't', kind: 'text', worker: 2, error: { code: 'BAD_PAYLOAD', message: 'm' }, ms: 1 },
      { type: 'failed', id: 'a', kind: 'text', error: { code: 'UNKNOWN_KIND', message: 'm' } },
    ];
    holdsTo(fastTaskReply, ServerMessageSchema, bases, bases);
    expect(fastTaskReply({ type: 'stats', id: 's', workers: [] })).to.equal(undefined);
  });
});
