import { expect } from 'chai';
import path from 'node:path';
import { z } from 'zod';
import { kebabCase, parseArgs } from '../../shared/args';
import { loadServerConfig, ServerConfigSchema } from '../../server/config';
import { flagOption, optionSpec } from '../../shared/options';

function load(argv: string[], env: NodeJS.ProcessEnv = {}) {
  return loadServerConfig(argv, env);
}

describe('server configuration', function () {
  it('defaults to 127.0.0.1:5000, three workers and ./data', function () {
    const result = load([]);
    expect(result.ok).to.equal(true);
    if (!result.ok) return;
    expect(result.config).to.include({ host: '127.0.0.1', port: 5000, workers: 3, quiet: false });
    expect(result.config.dataDir).to.equal(path.resolve('data'));
  });

  it('reads flags in both --name value and --name=value forms', function () {
    const result = load(['--port', '0', '--workers=5', '--data-dir', '/tmp/x', '--quiet']);
    expect(result.ok && result.config).to.include({ port: 0, workers: 5, dataDir: '/tmp/x', quiet: true });
  });

  it('reads RONDA_* environment variables, and the command line wins', function () {
    const result = load(['--port', '7000'], { RONDA_PORT: '6000', RONDA_WORKERS: '2', RONDA_QUIET: '1' });
    expect(result.ok && result.config).to.include({ port: 7000, workers: 2, quiet: true });
  });

  const bad: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [['--port', '70000'], {}, /^--port must be at most 65535$/],
    [['--port', 'abc'], {}, /^--port must be a number, not a string$/],
    [['--workers', '0'], {}, /^--workers must be at least 1$/],
    [['--workers', '2.5'], {}, /^--workers/],
    [[], { RONDA_WORKERS: 'many' }, /^RONDA_WORKERS must be a number, not a string$/],
    [[], { RONDA_PORT: '70000' }, /^RONDA_PORT must be at most 65535$/],
    [['--workers', 'many'], { RONDA_WORKERS: '2' }, /^--workers must be a number, not a string$/],
    [['--colour'], {}, /^unknown option --colour$/],
    [['--colour', 'red'], {}, /^unknown option --colour$/],
    [['--wrokers', '2'], {}, /^unknown option --wrokers \(did you mean --workers\?\)$/],
    [['--port'], {}, /^--port needs a value: --port <value> or --port=<value>$/],
    [['extra'], {}, /^unexpected argument "extra"$/],
    [['--host', '0.0.0.0'], {}, /^--token is required to listen on a non-loopback address/],
    [['--token', 'short'], {}, /^--token must be at least 8 characters long$/],
    [['--task-timeout-ms', '5000', '--max-task-timeout-ms', '1000'], {}, /^--max-task-timeout-ms must be at least --task-timeout-ms$/],
    [['--quiet=maybe'], {}, /^--quiet must be a boolean/],
  ];
  for (const [argv, env, message] of bad) {
    it(`rejects ${[...argv, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')}`, function () {
      const result = load(argv, env);
      expect(result.ok).to.equal(false);
      if (!result.ok) expect(result.message).to.match(message);
    });
  }

  it('knows every option of ServerConfigSchema, flags and values alike, with no list to keep up to date', function () {
    for (const [name, option] of Object.entries(ServerConfigSchema.shape)) {
      const flag = `--${kebabCase(name)}`;
      const result = load(option instanceof z.ZodDefault && typeof option.def.defaultValue === 'boolean' ? [flag] : [flag, '1']);
      if (!result.ok) expect(result.message, flag).to.not.match(/unknown option|needs a value/);
    }
    expect(optionSpec(ServerConfigSchema).flags).to.deep.equal(new Set(['quiet', 'help', 'version']));
    // An option added to the schema is known at once.
    const grown = z.strictObject({ ...ServerConfigSchema.shape, dispatch: z.string(), verbose: flagOption.default(false) });
    expect(parseArgs(['--dispatch', 'least-busy', '--verbose'], optionSpec(grown)).options).to.deep.equal({ dispatch: 'least-busy', verbose: true });
  });

  it('takes -h for --help', function () {
    const result = load(['-h']);
    expect(result.ok && result.config.help).to.equal(true);
  });

  it('accepts a non-loopback host with a token', function () {
    const result = load(['--host', '0.0.0.0', '--token', 'long-enough-secret']);
    expect(result.ok && result.config).to.include({ host: '0.0.0.0', token: 'long-enough-secret' });
  });
});
