/**
 * Server-sent events for the console: each event is serialized once and written to every
 * subscriber whose socket keeps up. A subscriber that does not read (a slow browser, a stopped
 * tab) has its events dropped once MAX_BUFFERED_BYTES are waiting for it, and is told how many it
 * missed when it catches up: it never holds more memory than that, and never slows the task path,
 * which only ever calls publish() from the once-a-second tick and on worker changes.
 */
import type { ServerResponse } from 'node:http';

/** Bytes of events waiting in one subscriber's socket before its events are dropped. */
export const MAX_BUFFERED_BYTES = 256 * 1024;
/** Subscribers at once; more are refused (each costs a socket and up to MAX_BUFFERED_BYTES). */
export const MAX_SUBSCRIBERS = 64;

export type EventName = 'hello' | 'stats' | 'tick' | 'tasks' | 'worker' | 'queue' | 'dropped';

class Subscriber {
  dropped = 0;

  constructor(readonly response: ServerResponse) {}

  /** Writes the frame unless too much is waiting already; says whether it was written. */
  offer(frame: string): boolean {
    if (this.response.writableLength > MAX_BUFFERED_BYTES) {
      this.dropped += 1;
      return false;
    }
    this.response.write(frame);
    return true;
  }
}

export class EventHub {
  private readonly subscribers = new Set<Subscriber>();

  /** Called when the first subscriber comes and after the last one goes. */
  constructor(private readonly onWatching: (watching: boolean) => void = () => undefined) {}

  get size(): number {
    return this.subscribers.size;
  }

  get full(): boolean {
    return this.subscribers.size >= MAX_SUBSCRIBERS;
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
      if (subscriber.dropped === 0) return;
      const missed = subscriber.dropped;
      subscriber.dropped = 0;
      subscriber.offer(frame('dropped', { missed }));
    });
    response.on('close', () => {
      this.subscribers.delete(subscriber);
      if (this.subscribers.size === 0) this.onWatching(false);
    });
    response.socket?.setNoDelay(true);
    for (const [name, data] of first) subscriber.offer(frame(name, data));
  }

  publish(name: EventName, data: unknown): void {
    if (this.subscribers.size === 0) return;
    const text = frame(name, data);
    for (const subscriber of this.subscribers) subscriber.offer(text);
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
