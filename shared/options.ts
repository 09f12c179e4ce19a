/**
 * Command-line and environment options, generically: the helpers the primary's, the client's and
 * the bench's option schemas are built from (each program's own schema lives with it).
 */
import { z } from 'zod';
import { kebabCase, type OptionSpec } from './args';
import { describeIssue } from './errors';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 5000;

/** An integer option given as text (command line, environment) or as a number (tests). */
export function intOption(min: number, max: number) {
  return z.preprocess(
    // Any decimal number is read as one, so that `1.5` is refused as not whole rather than as text.
    (value) => (typeof value === 'string' && /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(value.trim()) ? Number(value) : value),
    z.number().int().min(min).max(max),
  );
}

/** A flag: present on the command line, or `1`/`true`/`0`/`false` in the environment. */
export const flagOption = z.preprocess((value) => {
  if (typeof value !== 'string') return value;
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  return value;
}, z.boolean());

export const HostSchema = z.string().min(1).max(255);
export const PortSchema = intOption(0, 65535);

/**
 * The options an object schema takes, for parseArgs: every key of its shape, the flags being those
 * built on flagOption. Derived rather than listed, so that an option added to a schema is known to
 * the parser with no other change.
 * @param extraFlags options of the shape that may also stand alone (`--retry` or `--retry=3`).
 */
export function optionSpec(schema: { shape: Record<string, z.core.$ZodType> }, extraFlags: readonly string[] = []): OptionSpec {
  const flags = new Set<string>();
  const values = new Set<string>();
  for (const [name, option] of Object.entries(schema.shape)) {
    (isFlag(option) || extraFlags.includes(name) ? flags : values).add(name);
  }
  return { flags, values };
}

function isFlag(option: z.core.$ZodType): boolean {
  let inner = option;
  // `flagOption.default(false)` and `.optional()` wrap it; the flag is what they wrap.
  for (;;) {
    if (inner instanceof z.core.$ZodDefault || inner instanceof z.core.$ZodOptional) inner = inner._zod.def.innerType;
    else return inner === flagOption;
  }
}

/**
 * Names each issue by its option, e.g. `--port must be at most 65535`, or by the environment
 * variable its value came from (`RONDA_PORT must be a number, not a string`).
 * @param fromEnvironment option -> variable, for the values withEnvironment took from one.
 */
export function describeOptionIssues(
  issues: readonly z.core.$ZodIssue[],
  fromEnvironment: ReadonlyMap<string, string> = new Map(),
): string {
  return issues
    .map((issue) => {
      const [option, ...rest] = issue.path;
      const name =
        option === undefined ? 'options' : (fromEnvironment.get(String(option)) ?? `--${kebabCase(String(option))}`);
      if (issue.code === 'unrecognized_keys') {
        return `unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys
          .map((key) => `--${kebabCase(key)}`)
          .join(', ')}`;
      }
      return describeIssue({ ...issue, path: rest }, name);
    })
    .join('; ');
}
