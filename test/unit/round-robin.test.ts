import { expect } from 'chai';
import { RoundRobin } from '../../server/round-robin';

/** A stand-in for a worker slot: up or down, with room for `capacity` tasks. */
class FakeWorker {
  taken: number[] = [];
  constructor(
    readonly slot: number,
    public up = true,
    public capacity = Number.POSITIVE_INFINITY,
  ) {}
  canTake(): boolean {
    return this.up && this.taken.length < this.capacity;
  }
}

function dispatch(roundRobin: RoundRobin<FakeWorker>, tasks: number): (number | undefined)[] {
  return Array.from({ length: tasks }, (_, task) => {
    const worker = roundRobin.next((w) => w.canTake());
    worker?.taken.push(task);
    return worker?.slot;
  });
}

describe('RoundRobin', function () {
  it('goes 1, 2, 3, 1, 2, 3 over workers that are all up', function () {
    const workers = [1, 2, 3].map((slot) => new FakeWorker(slot));
    expect(dispatch(new RoundRobin(workers), 7)).to.deep.equal([1, 2, 3, 1, 2, 3, 1]);
  });

  it('skips a worker that is down and takes it back in its place when it returns', function () {
    const workers = [1, 2, 3].map((slot) => new FakeWorker(slot));
    const roundRobin = new RoundRobin(workers);
    expect(dispatch(roundRobin, 1)).to.deep.equal([1]);
    (workers[1] as FakeWorker).up = false;
    expect(dispatch(roundRobin, 4)).to.deep.equal([3, 1, 3, 1]);
    (workers[1] as FakeWorker).up = true;
    expect(dispatch(roundRobin, 3)).to.deep.equal([2, 3, 1]);
  });

  it('passes over a full worker and returns nothing when every worker is full or down', function () {
    const workers = [new FakeWorker(1, true, 1), new FakeWorker(2, false), new FakeWorker(3, true, 2)];
    expect(dispatch(new RoundRobin(workers), 5)).to.deep.equal([1, 3, 3, undefined, undefined]);
  });
});
