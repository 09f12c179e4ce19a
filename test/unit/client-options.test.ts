import { expect } from 'chai';
import {
  ConsoleOptionsSchema,
  DEFAULT_RETRY_ATTEMPTS,
  parseCommandLine,
  ResultsOptionsSchema,
  StatsOptionsSchema,
  splitCommand,
  SubmitCommandSchema,
} from '../../client/cli-options';

describe('client options (client/cli-options.ts)', function () {
  it('defaults to 127.0.0.1:5000 and reads RONDA_HOST, RONDA_PORT and RONDA_TOKEN', function () {
    const defaults = parseCommandLine(ConsoleOptionsSchema, [], {});
    expect(defaults).to.deep.include({ ok: true });
    expect(defaults.ok && defaults.options).to.deep.include({ host: '127.0.0.1', port: 5000, retry: 0 });
    const fromEnv = parseCommandLine(ConsoleOptionsSchema, [], { RONDA_HOST: 'localhost', RONDA_PORT: '5001', RONDA_TOKEN: 'secret12' });
    expect(fromEnv.ok && fromEnv.options).to.deep.include({ host: 'localhost', port: 5001, token: 'secret12' });
    const flagWins = parseCommandLine(ConsoleOptionsSchema, ['--port', '6000'], { RONDA_PORT: '5001' });
    expect(flagWins.ok && flagWins.options.port).to.equal(6000);
  });

  it('does not take other RONDA_* variables, so the server data dir does not redirect `results`', function () {
    const parsed = parseCommandLine(ResultsOptionsSchema, [], { RONDA_DATA_DIR: '/srv/data', RONDA_WORKERS: '5' });
    expect(parsed.ok && parsed.options.dataDir).to.equal(undefined);
  });

  it('blames the environment variable, not the option, for a bad value that came from it', function () {
    expect(parseCommandLine(StatsOptionsSchema, [], { RONDA_PORT: 'abc' })).to.deep.equal({
      ok: false,
      message: 'RONDA_PORT must be a number, not a string',
    });
    expect(parseCommandLine(StatsOptionsSchema, ['--port', 'abc'], { RONDA_PORT: '5001' })).to.deep.equal({
      ok: false,
      message: '--port must be a number, not a string',
    });
  });

  it('takes --retry alone or with a count', function () {
    const bare = parseCommandLine(ConsoleOptionsSchema, ['--retry'], {});
    expect(bare.ok && bare.options.retry).to.equal(DEFAULT_RETRY_ATTEMPTS);
    const counted = parseCommandLine(ConsoleOptionsSchema, ['--retry=3'], {});
    expect(counted.ok && counted.options.retry).to.equal(3);
  });

  it('names the option and the rule of a bad value', function () {
    expect(parseCommandLine(ConsoleOptionsSchema, ['--port', '0'], {})).to.deep.equal({ ok: false, message: '--port must be at least 1' });
    expect(parseCommandLine(ResultsOptionsSchema, ['--limit', '5000'], {})).to.deep.equal({ ok: false, message: '--limit must be at most 1000' });
    expect(parseCommandLine(SubmitCommandSchema, ['--kind', 'Bad!'], {})).to.deep.include({ ok: false });
    expect(parseCommandLine(SubmitCommandSchema, ['--kind'], {})).to.deep.equal({
      ok: false,
      message: '--kind needs a value: --kind <value> or --kind=<value>',
    });
  });

  it('names an unknown option as unknown, even as the last word, with the nearest option of that command', function () {
    expect(parseCommandLine(SubmitCommandSchema, ['--colour'], {})).to.deep.equal({ ok: false, message: 'unknown option --colour' });
    expect(parseCommandLine(SubmitCommandSchema, ['--colour', 'red'], {})).to.deep.equal({ ok: false, message: 'unknown option --colour' });
    expect(parseCommandLine(StatsOptionsSchema, ['--jsn'], {})).to.deep.equal({ ok: false, message: 'unknown option --jsn (did you mean --json?)' });
    // --retry is the console's; stats does not know it, and --data-dir is only results'.
    expect(parseCommandLine(StatsOptionsSchema, ['--retry'], {})).to.deep.include({ ok: false });
    expect(parseCommandLine(StatsOptionsSchema, ['--data-dir', 'x'], {})).to.deep.include({ ok: false });
    expect(parseCommandLine(ResultsOptionsSchema, ['--data-dir', 'x'], {})).to.deep.include({ ok: true });
    expect(parseCommandLine(ResultsOptionsSchema, ['--wroker', '2'], {})).to.deep.equal({
      ok: false,
      message: 'unknown option --wroker (did you mean --worker?)',
    });
  });

  it('takes -h for --help', function () {
    const parsed = parseCommandLine(SubmitCommandSchema, ['-h'], {});
    expect(parsed.ok && parsed.options.help).to.equal(true);
    expect(parsed.ok && parsed.positionals).to.deep.equal([]);
  });

  it('keeps positional tasks in order, options anywhere', function () {
    const parsed = parseCommandLine(SubmitCommandSchema, ['a', '--kind', 'hash', 'b', '--json', '--', '--c'], {});
    expect(parsed.ok && parsed.positionals).to.deep.equal(['a', 'b', '--c']);
    expect(parsed.ok && parsed.options).to.deep.include({ kind: 'hash', json: true });
  });

  it('finds the command after options, never taking an option\'s value for it', function () {
    expect(splitCommand(['--port', '5600', 'stats', '--json'])).to.deep.equal({ command: 'stats', args: ['--port', '5600', '--json'] });
    expect(splitCommand(['stats', '--port', '5600'])).to.deep.equal({ command: 'stats', args: ['--port', '5600'] });
    expect(splitCommand(['--port=5600', '--retry', 'client'])).to.deep.equal({ command: 'client', args: ['--port=5600', '--retry'] });
    // A value that happens to be a command's name is still the value.
    expect(splitCommand(['--token', 'stats'])).to.deep.equal({ command: undefined, args: ['--token', 'stats'] });
    expect(splitCommand(['--host', 'results', '--port', '1', 'submit', 'x'])).to.deep.equal({
      command: 'submit',
      args: ['--host', 'results', '--port', '1', 'x'],
    });
    expect(splitCommand(['--port', '5600'])).to.deep.equal({ command: undefined, args: ['--port', '5600'] });
    expect(splitCommand([])).to.deep.equal({ command: undefined, args: [] });
  });
});
