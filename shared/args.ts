/**
 * A small command-line reader shared by the server, the worker and the client: `--name value`,
 * `--name=value`, bare `--flag`, `-h`/`-v` for `--help`/`--version`, and `--` before words that are
 * not options. It only splits words; what the values mean is for a zod schema to decide, so that
 * every bad value is reported the same way.
 */
export interface ParsedArgs {
  /** Option values by camelCase name; a bare flag is `true`. */
  options: Record<string, string | true>;
  /** Words that are not options, in order. */
  positionals: string[];
}

/** The options a command takes, by camelCase name (see optionSpec in config.ts to derive one). */
export interface OptionSpec {
  /** Options that take no value (`--json`); `--name=value` may still give one (`--retry=3`). */
  flags: ReadonlySet<string>;
  /**
   * Options that take a value. With it, any other name is refused as unknown. Without it, every
   * name that is not a flag takes a value, unchecked: the worker's arguments, which the primary
   * writes, are checked by its schema alone.
   */
  values?: ReadonlySet<string>;
}

export class ArgsError extends Error {
  override readonly name = 'ArgsError';
}

/** One-letter forms of the options every command has; a command without them keeps `-h` a word. */
const SHORT_OPTIONS: Readonly<Record<string, string>> = { '-h': 'help', '-v': 'version' };

/**
 * @param spec the options the command takes; a bare set is its flags, every other name taking a
 *   value unchecked.
 */
export function parseArgs(argv: readonly string[], spec: OptionSpec | ReadonlySet<string>): ParsedArgs {
  const { flags, values } = 'flags' in spec ? spec : { flags: spec, values: undefined };
  const known = (name: string): boolean => flags.has(name) || values === undefined || values.has(name);
  // Only an option the command knows stops a value from being read: `--limit -5` is a value.
  const isOption = (word: string): boolean =>
    word === '--' ||
    (SHORT_OPTIONS[word] !== undefined && flags.has(SHORT_OPTIONS[word])) ||
    (values !== undefined && word.startsWith('--') && known(optionName(word)));
  const options: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const word = argv[i] as string;
    if (word === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    const short = SHORT_OPTIONS[word];
    if (short !== undefined && flags.has(short)) {
      options[short] = true;
      continue;
    }
    if (!word.startsWith('--')) {
      positionals.push(word);
      continue;
    }
    const name = optionName(word);
    if (!known(name)) throw new ArgsError(unknownOption(name, [...flags, ...(values ?? [])]));
    const eq = word.indexOf('=');
    if (eq !== -1) {
      options[name] = word.slice(eq + 1);
    } else if (flags.has(name)) {
      options[name] = true;
    } else {
      const value = argv[i + 1];
      if (value === undefined || isOption(value)) {
        const flag = `--${kebabCase(name)}`;
        throw new ArgsError(`${flag} needs a value: ${flag} <value> or ${flag}=<value>`);
      }
      options[name] = value;
      i += 1;
    }
  }
  return { options, positionals };
}

function optionName(word: string): string {
  const eq = word.indexOf('=');
  return camelCase(word.slice(2, eq === -1 ? undefined : eq));
}

function unknownOption(name: string, names: readonly string[]): string {
  const suggestion = closestName(kebabCase(name), names.map(kebabCase));
  return `unknown option --${kebabCase(name)}${suggestion === undefined ? '' : ` (did you mean --${suggestion}?)`}`;
}

/**
 * The name in `names` that `word` was most likely meant to be: the only one it begins, or the
 * nearest by edit distance (a swap of two letters counting as one edit) if that is close enough
 * for a typo. Undefined when none is.
 */
export function closestName(word: string, names: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  const beginning = names.filter((name) => name.toLowerCase().startsWith(lower));
  if (lower.length >= 2 && beginning.length === 1) return beginning[0];
  // One edit in a short word, a third of the letters in a longer one.
  const allowed = Math.max(1, Math.floor(lower.length / 3));
  let best: string | undefined;
  let bestDistance = allowed + 1;
  for (const name of names) {
    const distance = editDistance(lower, name.toLowerCase());
    if (distance < bestDistance) {
      best = name;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance with adjacent swaps (optimal string alignment). */
function editDistance(a: string, b: string): number {
  // cost[i * width + j]: edits that turn the first i letters of a into the first j of b.
  const width = b.length + 1;
  const cost: number[] = [];
  const at = (i: number, j: number): number => cost[i * width + j] ?? Infinity;
  for (let i = 0; i <= a.length; i += 1) {
    for (let j = 0; j <= b.length; j += 1) {
      if (i === 0 || j === 0) {
        cost.push(i + j);
        continue;
      }
      let edits = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) edits = Math.min(edits, at(i - 2, j - 2) + 1);
      cost.push(edits);
    }
  }
  return at(a.length, b.length);
}

/** Options with the environment filled in, and where those values came from. */
export interface MergedOptions {
  options: Record<string, string | true>;
  /**
   * The variable each option read from the environment came from (`port` -> `RONDA_PORT`), so that
   * a bad value is blamed on what the person actually set.
   */
  fromEnvironment: ReadonlyMap<string, string>;
}

/**
 * Fills options not given on the command line from `RONDA_<NAME>` environment variables, so that
 * `--data-dir` and `RONDA_DATA_DIR` are the same setting.
 */
export function withEnvironment(
  options: Record<string, string | true>,
  names: readonly string[],
  env: NodeJS.ProcessEnv,
): MergedOptions {
  const merged = { ...options };
  const fromEnvironment = new Map<string, string>();
  for (const name of names) {
    const variable = envName(name);
    const value = env[variable];
    if (merged[name] === undefined && value !== undefined && value !== '') {
      merged[name] = value;
      fromEnvironment.set(name, variable);
    }
  }
  return { options: merged, fromEnvironment };
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
