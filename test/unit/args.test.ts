import { expect } from 'chai';
import { ArgsError, closestName, parseArgs, type OptionSpec } from '../../shared/args';

const SPEC: OptionSpec = { flags: new Set(['json', 'help', 'version']), values: new Set(['port', 'dataDir', 'limit']) };

function refusal(argv: string[], spec: OptionSpec | ReadonlySet<string> = SPEC): string {
  try {
    parseArgs(argv, spec);
  } catch (error) {
    if (error instanceof ArgsError) return error.message;
    throw error;
  }
  throw new Error(`parseArgs accepted ${argv.join(' ')}`);
}

describe('argument parser (shared/args.ts)', function () {
  it('reads --name value, --name=value, bare flags, and everything after -- as words', function () {
    expect(parseArgs(['--port', '5000', '--data-dir=/tmp/x', '--json', 'a', '--', '--limit', '-h'], SPEC)).to.deep.equal({
      options: { port: '5000', dataDir: '/tmp/x', json: true },
      positionals: ['a', '--limit', '-h'],
    });
  });

  it('names an unknown option as unknown, wherever it is, with the nearest known one', function () {
    expect(refusal(['--bogus'])).to.equal('unknown option --bogus');
    expect(refusal(['--jsn'])).to.equal('unknown option --jsn (did you mean --json?)');
    expect(refusal(['--prot', '5000'])).to.equal('unknown option --prot (did you mean --port?)');
    expect(refusal(['--data=/tmp'])).to.equal('unknown option --data (did you mean --data-dir?)');
  });

  it('says that a value option needs a value when none follows, or an option comes instead', function () {
    expect(refusal(['--port'])).to.equal('--port needs a value: --port <value> or --port=<value>');
    expect(refusal(['--port', '--json'])).to.equal('--port needs a value: --port <value> or --port=<value>');
    // A word that is no option is a value, even if it starts with a dash.
    expect(parseArgs(['--limit', '-5'], SPEC).options).to.deep.equal({ limit: '-5' });
  });

  it('takes -h for --help and -v for --version where the command has them, and other dashed words as words', function () {
    expect(parseArgs(['-h'], SPEC).options).to.deep.equal({ help: true });
    expect(parseArgs(['-v'], SPEC).options).to.deep.equal({ version: true });
    expect(parseArgs(['-h', '-v'], { flags: new Set(), values: new Set() })).to.deep.equal({ options: {}, positionals: ['-h', '-v'] });
    expect(parseArgs(['-', '-5'], SPEC).positionals).to.deep.equal(['-', '-5']);
  });

  it('with only a set of flags (the worker, whose arguments the primary writes), takes any other name with a value', function () {
    expect(parseArgs(['--slot', '2', '--db', 'x.db'], new Set())).to.deep.equal({ options: { slot: '2', db: 'x.db' }, positionals: [] });
    expect(refusal(['--slot'], new Set())).to.match(/^--slot needs a value/);
  });

  it('suggests a name only when it is close or a unique beginning', function () {
    const names = ['host', 'port', 'token', 'json', 'timeoutMs', 'maxTaskTimeoutMs', 'maxQueue'];
    expect(closestName('hots', names)).to.equal('host');
    expect(closestName('timeout', names)).to.equal('timeoutMs');
    expect(closestName('max', names)).to.equal(undefined);
    expect(closestName('colour', names)).to.equal(undefined);
    expect(closestName('stat', ['client', 'submit', 'results', 'stats', 'bench'])).to.equal('stats');
  });
});
