import { expect } from 'chai';
import { z } from 'zod';
import { parseConsoleLine } from '../../client/console-line';
import { BUILTIN_PAYLOAD_SCHEMAS, payloadSchemasOf } from '../../client/console-payload';

const KINDS = new Set(['text', 'hash', 'sleep', 'fib']);
const DRAFT = 'https://json-schema.org/draft/2020-12/schema';

/** What z.toJSONSchema gives for kinds' payload schemas (checked against zod below). */
const FIB_SCHEMA = {
  $schema: DRAFT,
  type: 'object',
  properties: { n: { type: 'integer', minimum: 0, maximum: 40 } },
  required: ['n'],
  additionalProperties: false,
};
const SERVER_SCHEMAS = {
  text: { $schema: DRAFT, type: 'string', minLength: 1, maxLength: 1048576 },
  hash: { $schema: DRAFT, type: 'string', maxLength: 1048576 },
  sleep: {
    $schema: DRAFT,
    type: 'object',
    properties: { ms: { type: 'integer', minimum: 0, maximum: 60000 } },
    required: ['ms'],
    additionalProperties: false,
  },
  // A server whose fib goes further than the built-in one: its bounds are the ones checked.
  fib: { ...FIB_SCHEMA, properties: { n: { type: 'integer', minimum: 0, maximum: 90 } } },
  upper: { $schema: DRAFT, type: 'string', maxLength: 1000 },
  add: {
    $schema: DRAFT,
    type: 'object',
    properties: { a: { type: 'number' }, b: { type: 'number' } },
    required: ['a', 'b'],
    additionalProperties: false,
  },
  ratio: {
    $schema: DRAFT,
    type: 'object',
    properties: { x: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 5 } },
    required: ['x'],
    additionalProperties: false,
  },
};
const SERVER_KINDS = new Set(Object.keys(SERVER_SCHEMAS));

const invalid = (line: string, kinds = KINDS, schemas?: Record<string, unknown>) => {
  const action = parseConsoleLine(line, kinds, schemas);
  expect(action.type, `${line} was accepted: ${JSON.stringify(action)}`).to.equal('invalid');
  return action.type === 'invalid' ? action.message : '';
};

describe('console payloads (client/console-payload.ts)', function () {
  it('uses literals that are what zod 4 writes for the kinds\' schemas', function () {
    expect(z.toJSONSchema(z.strictObject({ n: z.number().int().min(0).max(40) }))).to.deep.equal(FIB_SCHEMA);
    expect(z.toJSONSchema(z.strictObject({ x: z.number().gt(0).lt(5) }))).to.deep.equal(SERVER_SCHEMAS.ratio);
    expect(z.toJSONSchema(z.string().max(1000))).to.deep.equal(SERVER_SCHEMAS.upper);
    const { $schema, ...builtinFib } = FIB_SCHEMA;
    expect($schema).to.equal(DRAFT);
    expect(BUILTIN_PAYLOAD_SCHEMAS.fib).to.deep.equal(builtinFib);
  });

  it('refuses a :sleep or :fib that is no whole number in range, saying what was wrong, and sends nothing', function () {
    expect(invalid(':sleep abc')).to.equal(':sleep takes a whole number of milliseconds from 0 to 60000, not "abc"; e.g. :sleep 500');
    expect(invalid(':sleep -5')).to.equal(':sleep takes a whole number of milliseconds from 0 to 60000, not "-5"; e.g. :sleep 500');
    expect(invalid(':fib -1')).to.equal(':fib takes a whole number n from 0 to 40, not "-1"; e.g. :fib 30');
    expect(invalid(':fib 2.5')).to.equal(':fib takes a whole number n from 0 to 40, not "2.5"; e.g. :fib 30');
    expect(invalid(':fib 41')).to.equal(':fib takes a whole number n from 0 to 40, not "41"; e.g. :fib 30');
    expect(invalid(':fib')).to.equal(':fib takes a whole number n from 0 to 40, e.g. :fib 30');
    expect(invalid(':submit fib abc')).to.equal(':submit fib takes a whole number n from 0 to 40, not "abc"; e.g. :submit fib 30');
    expect(parseConsoleLine(':fib 40', KINDS)).to.deep.include({ type: 'task', payload: { n: 40 } });
    expect(parseConsoleLine(':sleep 0', KINDS)).to.deep.include({ type: 'task', payload: { ms: 0 } });
  });

  it('refuses a payload that is not JSON for any kind but text and hash, with the parse problem and an example', function () {
    expect(invalid(':submit fib {n:25}')).to.match(
      /^:submit fib: the payload is not JSON \(Expected property name or '\}' in JSON at position 1[^)]*\); e\.g\. :submit fib \{"n":30\}$/,
    );
    expect(invalid(':fib {n:25}')).to.match(/^:fib: the payload is not JSON \(.+\); e\.g\. :fib \{"n":30\}$/);
    // A kind the console knows nothing of (no list from the server) may take a string: in quotes.
    expect(parseConsoleLine(':resize not json')).to.have.property('message').that.matches(/^:resize: the payload is not JSON \(.+\); e\.g\. :resize \{"key":"value"\} or :resize "hola"$/);
    expect(parseConsoleLine(':resize "in quotes"')).to.deep.include({ type: 'task', payload: 'in quotes' });
    expect(parseConsoleLine(':submit text not json', KINDS)).to.deep.include({ type: 'task', payload: 'not json' });
    expect(parseConsoleLine(':hash {x', KINDS)).to.deep.include({ type: 'task', payload: '{x' });
  });

  it('goes by the server\'s schemas when its hello lists them: text kinds take the text, one-number kinds a bare number', function () {
    expect(parseConsoleLine(':upper hello world', SERVER_KINDS, SERVER_SCHEMAS)).to.deep.equal({
      type: 'task',
      kind: 'upper',
      payload: 'hello world',
      label: 'upper hello world',
    });
    expect(parseConsoleLine(':fib 85', SERVER_KINDS, SERVER_SCHEMAS)).to.deep.include({ payload: { n: 85 } });
    expect(invalid(':fib 95', SERVER_KINDS, SERVER_SCHEMAS)).to.equal(':fib takes a whole number n from 0 to 90, not "95"; e.g. :fib 30');
    expect(parseConsoleLine(':ratio 2.5', SERVER_KINDS, SERVER_SCHEMAS)).to.deep.include({ payload: { x: 2.5 } });
    expect(invalid(':ratio 5', SERVER_KINDS, SERVER_SCHEMAS)).to.equal(
      ':ratio takes a number x greater than 0 and less than 5, not "5"; e.g. :ratio 2.5',
    );
    // Two required fields: JSON, and an object at that.
    expect(parseConsoleLine(':add {"a":1,"b":2}', SERVER_KINDS, SERVER_SCHEMAS)).to.deep.include({ payload: { a: 1, b: 2 } });
    expect(invalid(':add 5', SERVER_KINDS, SERVER_SCHEMAS)).to.equal(':add takes a JSON object, not an integer; e.g. :add {"a":1,"b":1}');
  });

  it('reads the schemas from a hello defensively: absent or malformed means an older server', function () {
    const hello = { type: 'hello', server: 'ronda', protocol: 1, kinds: ['text'] } as const;
    expect(payloadSchemasOf(hello)).to.equal(undefined);
    expect(payloadSchemasOf({ ...hello, schemas: 'nope' })).to.equal(undefined);
    expect(payloadSchemasOf({ ...hello, schemas: SERVER_SCHEMAS })).to.deep.equal(SERVER_SCHEMAS);
    // A kind whose schema this client cannot read is sent as JSON, for the server to judge.
    const odd = { fib: { anyOf: [{ type: 'integer' }, { type: 'string' }] } };
    expect(parseConsoleLine(':fib 7', new Set(['fib']), odd)).to.deep.include({ type: 'task', payload: 7 });
  });
});
