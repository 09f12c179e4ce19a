import { expect } from 'chai';
import { parseConsoleLine, taskPayload } from '../../client/console-line';

const KINDS = new Set(['text', 'hash', 'sleep', 'fib']);

describe('console lines (client/console-line.ts)', function () {
  it('runs a plain line as a text task, trimmed, and ignores a blank one', function () {
    expect(parseConsoleLine('  tarea1  ', KINDS)).to.deep.equal({ type: 'task', kind: 'text', payload: 'tarea1', label: 'tarea1' });
    expect(parseConsoleLine('   ', KINDS)).to.deep.equal({ type: 'empty' });
  });

  it('leaves on salir, exit or quit in any case, and only on the whole word', function () {
    for (const word of ['salir', 'SALIR', 'Exit', 'quit', ' quit ', ':q']) {
      expect(parseConsoleLine(word, KINDS), word).to.deep.equal({ type: 'quit' });
    }
    expect(parseConsoleLine('salir ya', KINDS).type).to.equal('task');
  });

  it('turns the shortcuts into the payloads each kind expects', function () {
    expect(parseConsoleLine(':hash hola', KINDS)).to.deep.include({ kind: 'hash', payload: 'hola', label: 'hash hola' });
    expect(parseConsoleLine(':sleep 500', KINDS)).to.deep.include({ kind: 'sleep', payload: { ms: 500 } });
    expect(parseConsoleLine(':fib 30', KINDS)).to.deep.include({ kind: 'fib', payload: { n: 30 }, label: 'fib {"n":30}' });
    expect(parseConsoleLine(':submit sleep {"ms": 20}', KINDS)).to.deep.include({ kind: 'sleep', payload: { ms: 20 } });
    expect(parseConsoleLine(':submit text {"a":1}', KINDS)).to.deep.include({ kind: 'text', payload: '{"a":1}' });
  });

  it('sends JSON to other kinds, and the text itself when it is not JSON', function () {
    expect(taskPayload('resize', '{"w":3}')).to.deep.equal({ w: 3 });
    expect(taskPayload('resize', '[1,2]')).to.deep.equal([1, 2]);
    expect(taskPayload('resize', 'not json')).to.equal('not json');
    expect(taskPayload('fib', '{"n":3}')).to.deep.equal({ n: 3 });
    expect(taskPayload('hash', '42')).to.equal('42');
  });

  it('reads :results with a count and --worker, and names a bad value', function () {
    expect(parseConsoleLine(':results', KINDS)).to.deep.equal({ type: 'results', limit: 20, worker: undefined });
    expect(parseConsoleLine(':results 5 --worker 2', KINDS)).to.deep.equal({ type: 'results', limit: 5, worker: 2 });
    expect(parseConsoleLine(':results --worker=3', KINDS)).to.deep.equal({ type: 'results', limit: 20, worker: 3 });
    expect(parseConsoleLine(':results 0', KINDS)).to.deep.equal({ type: 'invalid', message: ':results: n must be at least 1' });
    expect(parseConsoleLine(':results --worker', KINDS)).to.deep.equal({ type: 'invalid', message: ':results: --worker needs a value: --worker <value> or --worker=<value>' });
    expect(parseConsoleLine(':results --wroker 2', KINDS)).to.deep.equal({ type: 'invalid', message: ':results: unknown option --wroker (did you mean --worker?)' });
    expect(parseConsoleLine(':results 1 2', KINDS).type).to.equal('invalid');
  });

  it('knows :stats and :help, and refuses an unknown command before sending anything', function () {
    expect(parseConsoleLine(':stats', KINDS)).to.deep.equal({ type: 'stats' });
    expect(parseConsoleLine(':STATS', KINDS)).to.deep.equal({ type: 'stats' });
    expect(parseConsoleLine(':help', KINDS)).to.deep.equal({ type: 'help' });
    expect(parseConsoleLine(':stats now', KINDS).type).to.equal('invalid');
    const unknown = parseConsoleLine(':stat 1', KINDS);
    expect(unknown).to.deep.equal({
      type: 'invalid',
      message: 'unknown command or task kind ":stat" (the server knows: text, hash, sleep, fib); type :help',
    });
    expect(parseConsoleLine(':submit fib', KINDS).type).to.equal('invalid');
    expect(parseConsoleLine(':Bad! 1', KINDS).type).to.equal('invalid');
    // Without the server's list, any well-formed kind is sent and the server judges it.
    expect(parseConsoleLine(':resize {"w":1}')).to.deep.include({ type: 'task', kind: 'resize', payload: { w: 1 } });
  });
});
