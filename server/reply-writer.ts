import { performance } from 'node:perf_hooks';

/** What the writer needs of a socket: net.Socket has it, and so does a test's fake. */
export interface WritableSocket {
  write(text: string): boolean;
  readonly writableLength: number;
  on(event: 'drain', listener: () => void): unknown;
}

/**
 * A connection's replies, coalesced: everything written in one turn of the event loop (the
 * replies of one batch of outcomes) goes to the socket in one write on the next tick. It knows
 * what the connection owes its client (written here and not yet taken by the kernel), so that the
 * connection reads no more requests than it can answer, and since when the client has read
 * nothing, so that one that never reads can be dropped.
 */
export class ReplyWriter {
  private out = '';
  private blocked = false;
  private blockedAt: number | undefined;
  private closed = false;

  /**
   * @param written called after each write to the socket and each drain: the replies owed may
   *   have shrunk, so requests that waited for them can be handled.
   */
  constructor(
    private readonly socket: WritableSocket,
    private readonly written: () => void,
  ) {
    socket.on('drain', () => {
      this.blocked = false;
      this.blockedAt = undefined;
      this.written();
    });
  }

  /** Characters owed to the client: queued here or in the socket, not yet taken by the kernel. */
  get owedChars(): number {
    return this.out.length + this.socket.writableLength;
  }

  /** The socket's buffer is full: the client is not reading. */
  get isBlocked(): boolean {
    return this.blocked;
  }

  /** performance.now() since which the socket's writes have been blocked, if they are. */
  get blockedSince(): number | undefined {
    return this.blockedAt;
  }

  /** Whether something waits for the next tick's write. */
  get pending(): boolean {
    return this.out !== '';
  }

  write(text: string): void {
    if (this.closed || text === '') return;
    if (this.out === '') process.nextTick(() => this.flush());
    this.out += text;
  }

  /** Writes nothing more (the socket closed). */
  close(): void {
    this.closed = true;
    this.out = '';
  }

  private flush(): void {
    const text = this.out;
    this.out = '';
    if (this.closed || text === '') return;
    if (!this.socket.write(text) && !this.blocked) {
      this.blocked = true;
      this.blockedAt = performance.now();
    }
    // What was owed may have gone straight to the kernel (no 'drain' will come).
    this.written();
  }
}
