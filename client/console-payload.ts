/**
 * What the console makes of the text typed after a task kind (`:fib 30`, `:upper hello`,
 * `:submit sleep {"ms":5}`), checked here so that a mistake is explained in the terms the person
 * typed and never sent. It goes by the JSON Schema of the kind's payload: the server's hello lists
 * them (`schemas`, made by zod's z.toJSONSchema); an older server sends none, and then the console
 * knows the built-in kinds' only.
 */
import { z } from 'zod';

/** Kind name -> JSON Schema of its payload, as the server's hello carries them. */
export type PayloadSchemas = Readonly<Record<string, unknown>>;

/** What an older server accepts for the built-in kinds (worker/builtin-kinds.ts), as z.toJSONSchema writes it. */
export const BUILTIN_PAYLOAD_SCHEMAS: PayloadSchemas = {
  text: { type: 'string', minLength: 1 },
  hash: { type: 'string' },
  sleep: {
    type: 'object',
    properties: { ms: { type: 'integer', minimum: 0, maximum: 60_000 } },
    required: ['ms'],
    additionalProperties: false,
  },
  fib: {
    type: 'object',
    properties: { n: { type: 'integer', minimum: 0, maximum: 40 } },
    required: ['n'],
    additionalProperties: false,
  },
};

/** Kinds whose payload is the text as typed, whatever a schema says: the seed's tasks. */
const TEXT_KINDS: ReadonlySet<string> = new Set(['text', 'hash']);

/** Words and an example for the built-in kinds, which read better than a property's name. */
const NUMBER_HINTS: Readonly<Record<string, { what: string; example: number }>> = {
  sleep: { what: 'of milliseconds', example: 500 },
  fib: { what: 'n', example: 30 },
};

// Only the few JSON Schema keywords read here; the rest of a schema is the server's to apply.
const StringSchema = z.object({ type: z.literal('string') });
const NumberSchema = z.object({
  type: z.enum(['integer', 'number']),
  minimum: z.number().optional(),
  maximum: z.number().optional(),
  exclusiveMinimum: z.number().optional(),
  exclusiveMaximum: z.number().optional(),
  description: z.string().optional(),
});
const ObjectSchema = z.object({
  type: z.literal('object'),
  properties: z.record(z.string(), z.unknown()),
  required: z.array(z.string()).default([]),
});
const SchemasSchema = z.record(z.string(), z.unknown());

/**
 * The `schemas` of a server's hello, or undefined if it sent none (an older server) or sent them
 * in a shape this client does not know. Read from the hello as an unknown field, so that this
 * client works with servers from before and after the field was added.
 */
export function payloadSchemasOf(hello: object): PayloadSchemas | undefined {
  const parsed = SchemasSchema.safeParse((hello as { schemas?: unknown }).schemas);
  return parsed.success ? parsed.data : undefined;
}

export type PayloadReading = { ok: true; payload: unknown } | { ok: false; message: string };

/**
 * The payload of a task of `kind` written as `text`: the text itself for a kind that takes a
 * string; `{<prop>: n}` for a bare number when the kind takes an object of one required number
 * (`:sleep 500`); JSON otherwise.
 * @param schemas the server's (undefined: an older server; the built-in kinds' are used).
 * @param typed how the person named the kind (`:fib`, `:submit fib`), for the messages.
 */
export function readPayload(kind: string, text: string, schemas: PayloadSchemas | undefined, typed: string): PayloadReading {
  const schema = (schemas ?? BUILTIN_PAYLOAD_SCHEMAS)[kind];
  if (TEXT_KINDS.has(kind) || StringSchema.safeParse(schema).success) {
    return text === '' ? refuse(`${typed} takes text, e.g. ${typed} hola`) : { ok: true, payload: text };
  }
  const number = numberForm(kind, schema);
  if (number !== undefined && !text.startsWith('{')) return readNumber(number, text, typed);
  // Without a schema the kind may take a string too, which JSON writes in quotes.
  const example = `${typed} ${JSON.stringify(exampleOf(kind, schema))}${schema === undefined ? ` or ${typed} "hola"` : ''}`;
  if (text === '') return refuse(`${typed} takes a JSON payload, e.g. ${example}`);
  let payload: unknown;
  try {
    payload = JSON.parse(text) as unknown;
  } catch (error) {
    return refuse(`${typed}: the payload is not JSON (${(error as Error).message}); e.g. ${example}`);
  }
  // Only the type is checked here, the most common slip (`:add 5` for an object); the server
  // checks the rest and names the field.
  const expected = TypedSchema.safeParse(schema);
  if (expected.success && !isOfType(payload, expected.data.type)) {
    return refuse(`${typed} takes a JSON ${expected.data.type}, not ${article(jsonType(payload))}; e.g. ${example}`);
  }
  return { ok: true, payload };
}

const TypedSchema = z.object({ type: z.enum(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']) });

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function isOfType(value: unknown, type: string): boolean {
  const actual = jsonType(value);
  return actual === type || (type === 'number' && actual === 'integer');
}

function article(type: string): string {
  return type === 'null' ? 'null' : `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}

interface NumberForm {
  property: string;
  integer: boolean;
  /** Words for the number: `n`, `of milliseconds`. */
  what: string;
  example: number;
  min: Bound | undefined;
  max: Bound | undefined;
}
type Bound = { value: number; inclusive: boolean };

/** The kind's payload is an object with exactly one required property, a number. */
function numberForm(kind: string, schema: unknown): NumberForm | undefined {
  const object = ObjectSchema.safeParse(schema);
  if (!object.success || object.data.required.length !== 1) return undefined;
  const property = object.data.required[0] as string;
  const number = NumberSchema.safeParse(object.data.properties[property]);
  if (!number.success) return undefined;
  const { type, minimum, maximum, exclusiveMinimum, exclusiveMaximum, description } = number.data;
  const integer = type === 'integer';
  const min = bound(minimum, exclusiveMinimum, integer, 1);
  const max = bound(maximum, exclusiveMaximum, integer, -1);
  const hint = NUMBER_HINTS[kind];
  const form = { property, integer, what: hint?.what ?? description ?? property, example: hint?.example ?? 10, min, max };
  return { ...form, example: exampleIn(form) };
}

/** The preferred example if the server's bounds allow it, else one that they do. */
function exampleIn(form: NumberForm): number {
  const { min, max } = form;
  if (fits(form, form.example)) return form.example;
  if (min !== undefined && max !== undefined) {
    const middle = (min.value + max.value) / 2;
    return form.integer ? Math.round(middle) : middle;
  }
  if (min !== undefined) return min.inclusive ? min.value : min.value + 1;
  if (max !== undefined) return max.inclusive ? max.value : max.value - 1;
  return form.example;
}

function fits({ integer, min, max }: NumberForm, value: number): boolean {
  return (
    Number.isFinite(value) &&
    (!integer || Number.isInteger(value)) &&
    (min === undefined || (min.inclusive ? value >= min.value : value > min.value)) &&
    (max === undefined || (max.inclusive ? value <= max.value : value < max.value))
  );
}

/**
 * A bound as a person reads it: an integer's exclusive bound made inclusive (`> 0` is `from 1`);
 * zod's ±MAX_SAFE_INTEGER of a bare `.int()` is no bound at all.
 */
function bound(inclusive: number | undefined, exclusive: number | undefined, integer: boolean, step: 1 | -1): Bound | undefined {
  let result: Bound | undefined;
  if (inclusive !== undefined) result = { value: inclusive, inclusive: true };
  if (exclusive !== undefined) {
    result = integer
      ? { value: step === 1 ? Math.floor(exclusive) + 1 : Math.ceil(exclusive) - 1, inclusive: true }
      : { value: exclusive, inclusive: false };
  }
  return result === undefined || Math.abs(result.value) >= Number.MAX_SAFE_INTEGER ? undefined : result;
}

const NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i;

function readNumber(form: NumberForm, text: string, typed: string): PayloadReading {
  const value = NUMBER.test(text) ? Number(text) : Number.NaN;
  if (fits(form, value)) return { ok: true, payload: { [form.property]: value } };
  const rule = `${typed} takes ${form.integer ? 'a whole number' : 'a number'} ${form.what}${describeRange(form)}`;
  const example = `e.g. ${typed} ${form.example}`;
  return refuse(text === '' ? `${rule}, ${example}` : `${rule}, not ${JSON.stringify(text)}; ${example}`);
}

function describeRange({ min, max }: NumberForm): string {
  if (min?.inclusive === true && max?.inclusive === true) return ` from ${min.value} to ${max.value}`;
  const parts = [
    ...(min === undefined ? [] : [`${min.inclusive ? 'at least' : 'greater than'} ${min.value}`]),
    ...(max === undefined ? [] : [`${max.inclusive ? 'at most' : 'less than'} ${max.value}`]),
  ];
  return parts.length === 0 ? '' : ` ${parts.join(' and ')}`;
}

/** A payload to show as an example: the kind's required properties with plausible values. */
function exampleOf(kind: string, schema: unknown): unknown {
  const number = numberForm(kind, schema);
  if (number !== undefined) return { [number.property]: number.example };
  const object = ObjectSchema.safeParse(schema);
  if (!object.success) return { key: 'value' };
  const sample = (property: unknown): unknown => {
    const type = z.object({ type: z.string() }).safeParse(property);
    const samples: Record<string, unknown> = { string: 'text', integer: 1, number: 1, boolean: true, array: [], object: {} };
    return type.success ? (samples[type.data.type] ?? null) : null;
  };
  return Object.fromEntries(object.data.required.map((name) => [name, sample(object.data.properties[name])]));
}

function refuse(message: string): PayloadReading {
  return { ok: false, message };
}
