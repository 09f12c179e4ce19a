import { expect } from 'chai';
import path from 'node:path';
import { loadServerConfig } from '../../shared/config';

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
    [[], { RONDA_WORKERS: 'many' }, /^--workers must be a number/],
    [['--colour'], {}, /^--colour needs a value$/],
    [['--colour', 'red'], {}, /^unknown option --colour$/],
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

  it('accepts a non-loopback host with a token', function () {
    const result = load(['--host', '0.0.0.0', '--token', 'long-enough-secret']);
    expect(result.ok && result.config).to.include({ host: '0.0.0.0', token: 'long-enough-secret' });
  });
});
