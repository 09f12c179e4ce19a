/**
 * A small command-line reader shared by the server, the worker and the client: `--name value`,
 * `--name=value` and bare `--flag`. It only splits words; what the values mean is for a zod schema
 * to decide, so that every bad value is reported the same way.
 */
export interface ParsedArgs {
  /** Option values by camelCase name; a bare flag is `true`. */
  options: Record<string, string | true>;
  /** Words that are not options, in order. */
  positionals: string[];
}

export class ArgsError extends Error {
  override readonly name = 'ArgsError';
}

/**
 * @param flags names (camelCase) of options that take no value.
 */
export function parseArgs(argv: readonly string[], flags: ReadonlySet<string>): ParsedArgs {
  const options: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const word = argv[i] as string;
    if (word === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith('--') || word === '-') {
      positionals.push(word);
      continue;
    }
    const eq = word.indexOf('=');
    const name = camelCase(word.slice(2, eq === -1 ? undefined : eq));
    if (eq !== -1) {
      options[name] = word.slice(eq + 1);
    } else if (flags.has(name)) {
      options[name] = true;
    } else {
      const value = argv[i + 1];
      if (value === undefined) throw new ArgsError(`--${kebabCase(name)} needs a value`);
      options[name] = value;
      i += 1;
    }
  }
  return { options, positionals };
}

/**
 * Fills options not given on the command line from `RONDA_<NAME>` environment variables, so that
 * `--data-dir` and `RONDA_DATA_DIR` are the same setting.
 */
export function withEnvironment(
  options: Record<string, string | true>,
  names: readonly string[],
  env: NodeJS.ProcessEnv,
): Record<string, string | true> {
  const merged = { ...options };
  for (const name of names) {
    const value = env[envName(name)];
    if (merged[name] === undefined && value !== undefined && value !== '') merged[name] = value;
  }
  return merged;
}

export function envName(name: string): string {
  return `RONDA_${kebabCase(name).replace(/-/g, '_').toUpperCase()}`;
}

export function camelCase(kebab: string): string {
  return kebab.replace(/-([a-z0-9])/g, (_, letter: string) => letter.toUpperCase());
}

export function kebabCase(camel: string): string {
  return camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}
