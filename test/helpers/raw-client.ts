/**
 * A bare socket client for tests that need what RondaConnection hides: bytes that are not valid
 * messages, every reply line as it came (a duplicate reply must be seen, not swallowed), and the
 * moment the server closes the connection.
 */
import net from 'node:net';
import { LineSplitter } from '../../shared/framing';
import { MAX_LINE_BYTES, ServerMessageSchema, type ResultRow, type ServerMessage, type StatsReply } from '../../shared/protocol';

export class RawClient {
  /** Every reply received, in order. */
  readonly messages: ServerMessage[] = [];
  /** Lines that were not server messages (plain-text replies). */
  readonly plain: string[] = [];
  readonly closed: Promise<void>;
  private readonly splitter = new LineSplitter(MAX_LINE_BYTES * 4);
  private waiters: (() => void)[] = [];
  private listeners: ((message: ServerMessage) => void)[] = [];
  private isClosed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => undefined); // 'close' follows
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new RawClient(socket));
      });
    });
  }

  /** Calls `listener` with each reply as it arrives. */
  onMessage(listener: (message: ServerMessage) => void): void {
    this.listeners.push(listener);
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Writes an object as one JSON line, or a string / bytes as they are. */
  send(data: object | string | Buffer): boolean {
    if (typeof data === 'string' || Buffer.isBuffer(data)) return this.socket.write(data);
    return this.socket.write(`${JSON.stringify(data)}\n`);
  }

  /**
   * Resolves with the first reply at index `from` or later that matches, waiting up to
   * `timeoutMs`.
   */
  async next<T extends ServerMessage>(
    match: (message: ServerMessage) => message is T,
    timeoutMs?: number,
    from?: number,
  ): Promise<T>;
  async next(match: (message: ServerMessage) => boolean, timeoutMs?: number, from?: number): Promise<ServerMessage>;
  async next(match: (message: ServerMessage) => boolean, timeoutMs = 5_000, from = 0): Promise<ServerMessage> {
    const deadline = Date.now() + timeoutMs;
    let index = from;
    for (;;) {
      for (; index < this.messages.length; index += 1) {
        const message = this.messages[index] as ServerMessage;
        if (match(message)) return message;
      }
      if (this.isClosed) throw new Error(`connection closed; replies so far: ${JSON.stringify(this.messages)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching reply within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Asks for stats and resolves with the answer. */
  async stats(): Promise<StatsReply> {
    const from = this.messages.length;
    this.send({ type: 'stats' });
    return this.next((message): message is StatsReply => message.type === 'stats', 5_000, from);
  }

  /** Asks for stored results and resolves with their rows; one query at a time. */
  async results(query: { id?: string; limit?: number; worker?: number }): Promise<ResultRow[]> {
    const from = this.messages.length;
    this.send({ type: 'results', ...query });
    const reply = await this.next((message) => message.type === 'results' || message.type === 'error', 5_000, from);
    if (reply.type !== 'results') throw new Error(`results: ${JSON.stringify(reply)}`);
    return reply.rows;
  }

  /** The reply for task `id` (done, failed, or an error that names it). */
  reply(id: string, timeoutMs?: number): Promise<ServerMessage> {
    return this.next((message) => 'id' in message && message.id === id, timeoutMs);
  }

  /** Resolves when the server has closed the connection, or rejects after `timeoutMs`. */
  async waitClosed(timeoutMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    for (const line of this.splitter.push(chunk)) {
      if (!line.ok) throw new Error(`unreadable reply line: ${line.code}`);
      const text = line.text;
      if (!text.startsWith('{')) {
        this.plain.push(text);
        continue;
      }
      const parsed = ServerMessageSchema.safeParse(JSON.parse(text));
      if (!parsed.success) throw new Error(`reply does not match the protocol: ${text}`);
      this.messages.push(parsed.data);
      for (const listener of this.listeners) listener(parsed.data);
    }
    this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** Sockets opened by tests, destroyed by closeRawClients() in afterEach. */
const open = new Set<RawClient>();

export async function rawClient(port: number): Promise<RawClient> {
  const client = await RawClient.connect(port);
  open.add(client);
  void client.closed.then(() => open.delete(client));
  return client;
}

export function closeRawClients(): void {
  for (const client of open) client.destroy();
  open.clear();
}
