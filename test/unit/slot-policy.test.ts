import { expect } from 'chai';
import {
  blamesTasks,
  MAX_RETRY_DELAY_MS,
  MIN_UPTIME_MS,
  reclaim,
  respawnDelayMs,
  RESPAWN_BACKOFF_MAX_MS,
  retryDelayMs,
  youngDeathsAfter,
  type Death,
} from '../../server/slot-policy';

const death = (overrides: Partial<Death>): Death => ({
  wasReady: true,
  uptimeMs: 5_000,
  killedForTimeLimit: false,
  toldWhy: false,
  ...overrides,
});

describe('slot policy (server/slot-policy.ts)', function () {
  it('waits half to all of the base doubled per retry before a retry, up to a minute', function () {
    const low = () => 0;
    const high = () => 1;
    expect([1, 2, 3, 4].map((retry) => [retryDelayMs(retry, 100, low), retryDelayMs(retry, 100, high)])).to.deep.equal([
      [50, 100],
      [100, 200],
      [200, 400],
      [400, 800],
    ]);
    expect(retryDelayMs(30, 100, high)).to.equal(MAX_RETRY_DELAY_MS);
    expect(retryDelayMs(30, 100, low)).to.equal(MAX_RETRY_DELAY_MS / 2);
    // Jittered: a thousand draws are not all the same.
    const draws = new Set(Array.from({ length: 1_000 }, () => retryDelayMs(3, 100)));
    expect(draws.size).to.be.above(50);
    for (const draw of draws) expect(draw).to.be.within(200, 400);
  });

  it('counts young deaths in a row; a long life resets the count', function () {
    const table: [number, Partial<Death>, number][] = [
      [0, { uptimeMs: 10 }, 1],
      [3, { uptimeMs: MIN_UPTIME_MS - 1 }, 4],
      [3, { uptimeMs: MIN_UPTIME_MS }, 0],
      [2, { wasReady: false, uptimeMs: 0 }, 3],
      // It said why it stopped (it cannot store): that is a crash loop to back off from, however long it lived.
      [1, { toldWhy: true, uptimeMs: 60_000 }, 2],
    ];
    for (const [before, overrides, after] of table) {
      expect(youngDeathsAfter(before, death(overrides)), JSON.stringify(overrides)).to.equal(after);
    }
  });

  it('leaves the count as it was after a kill for a time limit: neither grows nor hides a crash loop', function () {
    expect(youngDeathsAfter(0, death({ killedForTimeLimit: true, uptimeMs: 10 }))).to.equal(0);
    expect(youngDeathsAfter(4, death({ killedForTimeLimit: true, uptimeMs: 10 }))).to.equal(4);
    expect(youngDeathsAfter(4, death({ killedForTimeLimit: true, uptimeMs: 60_000 }))).to.equal(4);
  });

  it('respawns the first young death at once, then backs off 100, 200, 400 ms ... up to 10 s', function () {
    expect([0, 1, 2, 3, 4, 5].map(respawnDelayMs)).to.deep.equal([0, 0, 100, 200, 400, 800]);
    expect(respawnDelayMs(40)).to.equal(RESPAWN_BACKOFF_MAX_MS);
  });

  it('blames the tasks a worker held only when it died on its own while serving', function () {
    expect(blamesTasks(death({}))).to.equal(true);
    expect(blamesTasks(death({ killedForTimeLimit: true }))).to.equal(false);
    expect(blamesTasks(death({ toldWhy: true }))).to.equal(false);
    expect(blamesTasks(death({ wasReady: false }))).to.equal(false);
  });

  it('decides what becomes of each task a dead worker held', function () {
    expect(reclaim({ deaths: 0, timedOut: true }, 3)).to.equal('timeout');
    expect(reclaim({ deaths: 3, timedOut: false }, 3)).to.equal('lost');
    expect(reclaim({ deaths: 1, timedOut: false }, 3)).to.equal('suspect');
    expect(reclaim({ deaths: 0, timedOut: false }, 3)).to.equal('redeliver');
  });
});
