import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { EventHub, MAX_BUFFERED_BYTES, MAX_SUBSCRIBERS, STALLED_SUBSCRIBER_MS } from '../../server/http/events';

/** A response whose socket the test fills and drains by hand. */
class FakeResponse extends EventEmitter {
  writableLength = 0;
  readonly written: string[] = [];
  ended = false;
  socket = undefined;
  writeHead(): this {
    return this;
  }
  write(text: string): boolean {
    this.written.push(text);
    this.writableLength += Buffer.byteLength(text);
    return this.writableLength < MAX_BUFFERED_BYTES;
  }
  destroyed = false;
  end(): void {
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }
  drain(): void {
    this.writableLength = 0;
    this.emit('drain');
  }
}

const subscribe = (hub: EventHub, first: [never, unknown][] = []): FakeResponse => {
  const response = new FakeResponse();
  hub.subscribe(response as unknown as ServerResponse, first);
  return response;
};

describe('EventHub: server-sent events with a bounded buffer per subscriber', function () {
  it('sends each event to every subscriber, first events to the new one alone', function () {
    const hub = new EventHub();
    const a = subscribe(hub);
    const b = subscribe(hub, [['hello' as never, { n: 1 }]]);
    hub.publish('tick', { done: 3 });
    expect(a.written).to.deep.equal(['event: tick\ndata: {"done":3}\n\n']);
    expect(b.written).to.deep.equal(['event: hello\ndata: {"n":1}\n\n', 'event: tick\ndata: {"done":3}\n\n']);
  });

  it('drops events for a subscriber past its bound, holds no more, and says how many it missed when it drains', function () {
    const hub = new EventHub();
    const slow = subscribe(hub);
    const fast = subscribe(hub);
    const big = 'x'.repeat(64 * 1024);
    for (let i = 0; i < 100; i += 1) {
      hub.publish('tasks', big);
      fast.drain();
    }
    expect(fast.written).to.have.length(100);
    expect(slow.writableLength).to.be.below(MAX_BUFFERED_BYTES + 70 * 1024);
    const kept = slow.written.length;
    expect(kept).to.be.below(10);
    slow.drain();
    expect(slow.written[slow.written.length - 1]).to.equal(`event: dropped\ndata: {"missed":${100 - kept}}\n\n`);
  });

  it('tells when the first subscriber comes and the last goes, and is full at MAX_SUBSCRIBERS', function () {
    const states: boolean[] = [];
    const hub = new EventHub((watching) => states.push(watching));
    const responses = Array.from({ length: MAX_SUBSCRIBERS }, () => subscribe(hub));
    expect(hub.full).to.equal(true);
    for (const response of responses) response.emit('close');
    expect(hub.size).to.equal(0);
    expect(states).to.deep.equal([true, false]);
  });

  it('closes a subscriber whose events were dropped for STALLED_SUBSCRIBER_MS, and gives its place to a new one', async function () {
    const hub = new EventHub();
    const responses = Array.from({ length: MAX_SUBSCRIBERS }, () => subscribe(hub));
    const stalled = responses[0] as FakeResponse;
    stalled.writableLength = MAX_BUFFERED_BYTES + 1;
    hub.publish('tick', 1);
    for (const response of responses.slice(1)) response.drain();
    // Full, and nobody has been stalled long yet: the one dropping events makes room at once.
    expect(hub.full).to.equal(false);
    expect(stalled.destroyed).to.equal(true);
    expect(hub.size).to.equal(MAX_SUBSCRIBERS - 1);
    subscribe(hub);
    expect(hub.full, 'full of subscribers that read').to.equal(true);

    const slow = new EventHub();
    const late = subscribe(slow);
    late.writableLength = MAX_BUFFERED_BYTES + 1;
    const realNow = performance.now;
    try {
      let now = realNow.call(performance);
      performance.now = () => now;
      slow.publish('tick', 1);
      now += STALLED_SUBSCRIBER_MS - 1;
      slow.publish('tick', 2);
      expect(late.destroyed).to.equal(false);
      now += 2;
      slow.publish('tick', 3);
      expect(late.destroyed).to.equal(true);
      expect(slow.size).to.equal(0);
    } finally {
      performance.now = realNow;
    }
  });
});
