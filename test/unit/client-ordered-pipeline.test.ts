import { expect } from 'chai';
import { runOrdered } from '../../client/ordered-pipeline';

const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('ordered pipeline (client/ordered-pipeline.ts)', function () {
  it('emits in input order however the outcomes arrive', async function () {
    const delays = [30, 0, 20, 5, 10, 0, 25];
    const emitted: string[] = [];
    const count = await runOrdered(delays, {
      window: 100,
      start: async (ms, index) => {
        await tick(ms);
        return `#${index}:${ms}`;
      },
      emit: (output) => emitted.push(output),
    });
    expect(count).to.equal(delays.length);
    expect(emitted).to.deep.equal(delays.map((ms, index) => `#${index}:${ms}`));
  });

  it('emits an outcome as soon as all before it are in, not at the end', async function () {
    const emitted: number[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const run = runOrdered([0, 1, 2], {
      window: 10,
      start: async (n) => {
        if (n === 2) await gate;
        return n;
      },
      emit: (n) => emitted.push(n),
    });
    await tick(10);
    expect(emitted).to.deep.equal([0, 1]);
    release();
    await run;
    expect(emitted).to.deep.equal([0, 1, 2]);
  });

  it('never has more than `window` inputs started and not yet emitted', async function () {
    let started = 0;
    let emitted = 0;
    let widest = 0;
    async function* inputs() {
      for (let i = 0; i < 200; i += 1) yield i;
    }
    await runOrdered(inputs(), {
      window: 8,
      start: async (n) => {
        started += 1;
        widest = Math.max(widest, started - emitted);
        await tick(n % 3);
        return n;
      },
      emit: () => (emitted += 1),
    });
    expect(emitted).to.equal(200);
    expect(widest).to.be.at.most(8);
    expect(widest).to.be.greaterThan(1);
  });

  it('stops reading input when told to, and still emits what it started', async function () {
    const emitted: number[] = [];
    const count = await runOrdered([1, 2, 3, 4, 5, 6], {
      window: 1,
      stop: () => emitted.includes(3),
      start: async (n) => n,
      emit: (n) => emitted.push(n),
    });
    expect(count).to.equal(3);
    expect(emitted).to.deep.equal([1, 2, 3]);
  });
});
