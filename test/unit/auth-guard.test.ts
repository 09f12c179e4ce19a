import { expect } from 'chai';
import { PassThrough } from 'node:stream';
import { Logger } from '../../shared/logger';
import { AUTH_FAILURE_MAX_DELAY_MS, AUTH_FAILURE_MEMORY_MS, AuthGuard } from '../../server/auth-guard';

describe('AuthGuard (slows down and logs failed authentication)', function () {
  let now: number;
  let log: string;
  let guard: AuthGuard;

  beforeEach(function () {
    now = 1_000_000;
    log = '';
    const stream = new PassThrough();
    stream.setEncoding('utf8').on('data', (text: string) => (log += text));
    guard = new AuthGuard(new Logger({ stream, env: { NO_COLOR: '1' } }), () => now);
  });

  it('answers each failure from an address later than the last: 250 ms, doubling, up to 5 s', function () {
    const delays = Array.from({ length: 8 }, () => guard.failed('10.0.0.5', 'wrong token'));
    expect(delays).to.deep.equal([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    expect(delays.at(-1)).to.equal(AUTH_FAILURE_MAX_DELAY_MS);
    // Another address has its own count.
    expect(guard.failed('10.0.0.6', 'wrong token')).to.equal(250);
  });

  it('forgets an address after a quiet minute, and at once after a right token', function () {
    guard.failed('10.0.0.5', 'wrong token');
    guard.failed('10.0.0.5', 'wrong token');
    now += AUTH_FAILURE_MEMORY_MS;
    expect(guard.failed('10.0.0.5', 'wrong token')).to.equal(250);
    guard.failed('10.0.0.5', 'wrong token');
    guard.succeeded('10.0.0.5');
    expect(guard.failed('10.0.0.5', 'wrong token')).to.equal(250);
  });

  it('logs failures, at most one line a second, counting the rest', function () {
    for (let i = 0; i < 50; i += 1) guard.failed('10.0.0.5', 'wrong token');
    now += 1_000;
    guard.failed('10.0.0.7', 'not a hello');
    const lines = log.trim().split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.match(/authentication failed from 10\.0\.0\.5 \(wrong token; 1 in a row from there, answered after 250 ms\)$/);
    expect(lines[1]).to.match(/authentication failed from 10\.0\.0\.7 \(not a hello; .*\); 49 more failure\(s\) not shown$/);
  });
});
