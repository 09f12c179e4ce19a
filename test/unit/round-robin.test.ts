import { expect } from 'chai';
import { RoundRobin, type Availability } from '../../server/round-robin';

/** A stand-in for a worker slot: up or down, with room for `capacity` tasks. */
class FakeWorker {
  taken: number[] = [];
  blocked = false;
  constructor(
    readonly slot: number,
    public up = true,
    public capacity = Number.POSITIVE_INFINITY,
  ) {}
  get inflightCount(): number {
    return this.taken.length;
  }
  availability(): Availability {
    if (!this.up) return 'down';
    return this.taken.length < this.capacity ? 'open' : 'full';
  }
  /** The worker finishes its oldest task. */
  finish(): void {
    this.taken.shift();
  }
}

function dispatch(roundRobin: RoundRobin<FakeWorker>, tasks: number): (number | undefined)[] {
  return Array.from({ length: tasks }, (_, task) => {
    const worker = roundRobin.next();
    worker?.taken.push(task);
    return worker?.slot;
  });
}

const workers = (...capacities: number[]) => capacities.map((capacity, index) => new FakeWorker(index + 1, true, capacity));

describe('RoundRobin: round-robin (strict)', function () {
  it('goes 1, 2, 3, 1, 2, 3 over workers that are all up', function () {
    expect(dispatch(new RoundRobin(workers(Infinity, Infinity, Infinity)), 7)).to.deep.equal([1, 2, 3, 1, 2, 3, 1]);
  });

  it('skips a worker that is down and takes it back in its place when it returns', function () {
    const ring = workers(Infinity, Infinity, Infinity);
    const roundRobin = new RoundRobin(ring);
    expect(dispatch(roundRobin, 1)).to.deep.equal([1]);
    (ring[1] as FakeWorker).up = false;
    expect(dispatch(roundRobin, 4)).to.deep.equal([3, 1, 3, 1]);
    (ring[1] as FakeWorker).up = true;
    expect(dispatch(roundRobin, 3)).to.deep.equal([2, 3, 1]);
  });

  it('waits for a full worker instead of passing it over: the order holds under load', function () {
    const ring = workers(1, 5, 5);
    const roundRobin = new RoundRobin(ring);
    // Worker 1 is full after one task: the 4th task is its turn, so nothing more goes out.
    expect(dispatch(roundRobin, 5)).to.deep.equal([1, 2, 3, undefined, undefined]);
    (ring[0] as FakeWorker).finish();
    expect(dispatch(roundRobin, 3)).to.deep.equal([1, 2, 3]);
  });

  it('gives nothing while every worker is down', function () {
    const ring = workers(Infinity, Infinity);
    for (const worker of ring) worker.up = false;
    expect(dispatch(new RoundRobin(ring), 2)).to.deep.equal([undefined, undefined]);
  });

  it('keeps the ring order through a long run of full and free workers', function () {
    const ring = workers(3, 3, 3);
    const roundRobin = new RoundRobin(ring);
    const order: number[] = [];
    for (let step = 0; step < 300; step += 1) {
      const slot = dispatch(roundRobin, 1)[0];
      if (slot !== undefined) order.push(slot);
      // Workers finish at different speeds: 1 often, 2 sometimes, 3 rarely.
      if (step % 2 === 0) (ring[0] as FakeWorker).finish();
      if (step % 3 === 0) (ring[1] as FakeWorker).finish();
      if (step % 7 === 0) (ring[2] as FakeWorker).finish();
    }
    expect(order.length).to.be.greaterThan(50);
    order.forEach((slot, index) => expect(slot, `task ${index}`).to.equal((index % 3) + 1));
  });
});

describe('RoundRobin: least-loaded', function () {
  it('picks the open worker holding the fewest tasks, ties in ring order', function () {
    const ring = workers(Infinity, Infinity, Infinity);
    const roundRobin = new RoundRobin(ring, 'least-loaded');
    expect(dispatch(roundRobin, 3)).to.deep.equal([1, 2, 3]);
    (ring[1] as FakeWorker).finish();
    expect(dispatch(roundRobin, 1)).to.deep.equal([2]);
    (ring[2] as FakeWorker).finish();
    (ring[0] as FakeWorker).finish();
    expect(dispatch(roundRobin, 2)).to.deep.equal([3, 1]);
  });

  it('sends nothing to a worker busy with a long synchronous task while another is open', function () {
    const ring = workers(Infinity, Infinity, Infinity);
    const roundRobin = new RoundRobin(ring, 'least-loaded');
    (ring[0] as FakeWorker).blocked = true;
    expect(dispatch(roundRobin, 6)).to.deep.equal([2, 3, 2, 3, 2, 3]);
    for (const worker of ring) worker.blocked = true;
    expect(dispatch(roundRobin, 2), 'all blocked: the least loaded').to.deep.equal([1, 1]);
  });

  it('passes over full and down workers instead of waiting', function () {
    const ring = workers(1, 5, 5);
    (ring[2] as FakeWorker).up = false;
    expect(dispatch(new RoundRobin(ring, 'least-loaded'), 4)).to.deep.equal([1, 2, 2, 2]);
  });
});
