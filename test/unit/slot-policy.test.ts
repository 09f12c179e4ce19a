import { expect } from 'chai';
import {
  blamesTasks,
  MIN_UPTIME_MS,
  reclaim,
  respawnDelayMs,
  RESPAWN_BACKOFF_MAX_MS,
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
