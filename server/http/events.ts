/**
 * Server-sent events for the console: each event is serialized once and written to every
 * subscriber whose socket keeps up. A subscriber that does not read (a slow browser, a stopped
 * tab) has its events dropped once MAX_BUFFERED_BYTES are waiting for it, and is told how many it
 * missed when it catches up: it never holds more memory than that, and never slows the task path,
 * which only ever calls publish() from the once-a-second tick and on worker changes.
 */
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

/** Bytes of events waiting in one subscriber's socket before its events are dropped. */
export const MAX_BUFFERED_BYTES = 256 * 1024;
/** Subscribers at once; more are refused (each costs a socket and up to MAX_BUFFERED_BYTES). */
export const MAX_SUBSCRIBERS = 64;
/**
 * A subscriber that has read nothing for this long while its events were dropped is closed
 * (a browser's EventSource, or the page's reader, comes back on its own), and one that has read
 * nothing at all for any time makes room for a new subscriber when all places are taken.
 */
export const STALLED_SUBSCRIBER_MS = 30_000;

export type EventName = 'hello' | 'stats' | 'tick' | 'tasks' | 'worker' | 'queue' | 'dropped';

class Subscriber {
  dropped = 0;
  /** performance.now() of the first event dropped since it last drained; undefined if none is. */
  droppingSince: number | undefined;

  constructor(readonly response: ServerResponse) {}

  /** Writes the frame unless too much is waiting already; says whether it was written. */
  offer(frame: string, now: number): boolean {
    if (this.response.writableLength > MAX_BUFFERED_BYTES) {
      this.dropped += 1;
      this.droppingSince ??= now;
      return false;
    }
    this.response.write(frame);
    return true;
  }

  stalledFor(now: number): number {
    return this.droppingSince === undefined ? 0 : now - this.droppingSince;
  }
}

export class EventHub {
  private readonly subscribers = new Set<Subscriber>();

  /** Called when the first subscriber comes and after the last one goes. */
  constructor(private readonly onWatching: (watching: boolean) => void = () => undefined) {}

  get size(): number {
    return this.subscribers.size;
  }

  /**
   * Whether a new subscriber must be refused: all places are taken, and none is held by one whose
   * events are being dropped (that one is closed to make room).
   */
  get full(): boolean {
    if (this.subscribers.size < MAX_SUBSCRIBERS) return false;
    const now = performance.now();
    let worst: Subscriber | undefined;
    for (const subscriber of this.subscribers) {
      if (subscriber.stalledFor(now) > (worst?.stalledFor(now) ?? 0)) worst = subscriber;
    }
    if (worst === undefined) return true;
    this.drop(worst);
    return false;
  }

  /** Takes over the response as an event stream; `first` are sent to it alone, at once. */
  subscribe(response: ServerResponse, first: readonly [EventName, unknown][]): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const subscriber = new Subscriber(response);
    this.subscribers.add(subscriber);
    if (this.subscribers.size === 1) this.onWatching(true);
    response.on('drain', () => {
      subscriber.droppingSince = undefined;
      if (subscriber.dropped === 0) return;
      const missed = subscriber.dropped;
      subscriber.dropped = 0;
      subscriber.offer(frame('dropped', { missed }), performance.now());
    });
    response.on('close', () => {
      this.subscribers.delete(subscriber);
      if (this.subscribers.size === 0) this.onWatching(false);
    });
    response.socket?.setNoDelay(true);
    const now = performance.now();
    for (const [name, data] of first) subscriber.offer(frame(name, data), now);
  }

  publish(name: EventName, data: unknown): void {
    if (this.subscribers.size === 0) return;
    const text = frame(name, data);
    const now = performance.now();
    for (const subscriber of this.subscribers) {
      if (!subscriber.offer(text, now) && subscriber.stalledFor(now) > STALLED_SUBSCRIBER_MS) this.drop(subscriber);
    }
  }

  private drop(subscriber: Subscriber): void {
    this.subscribers.delete(subscriber);
    if (this.subscribers.size === 0) this.onWatching(false);
    subscriber.response.destroy();
  }

  /** Ends every stream (the server is stopping). */
  close(): void {
    for (const subscriber of this.subscribers) subscriber.response.end();
    this.subscribers.clear();
  }
}

function frame(name: EventName, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}
