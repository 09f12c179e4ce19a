/**
 * HTTP for the console's tests: requests to 127.0.0.1 with Node's own fetch, and an event-stream
 * reader that keeps every event as it came.
 */
import http from 'node:http';

export interface HttpReply {
  status: number;
  headers: Headers;
  text: string;
  /** The body as JSON, or undefined if it is not. */
  json: any;
}

export async function request(
  port: number,
  path: string,
  options: { method?: string; body?: unknown; rawBody?: string; headers?: Record<string, string>; token?: string } = {},
): Promise<HttpReply> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.body !== undefined) headers['content-type'] ??= 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: options.method ?? (options.body === undefined && options.rawBody === undefined ? 'GET' : 'POST'),
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : options.rawBody !== undefined ? { body: options.rawBody } : {}),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

export interface StreamEvent {
  name: string;
  data: any;
  at: number;
}

/** A subscriber of /api/events that reads everything, until close(). */
export class EventReader {
  readonly events: StreamEvent[] = [];
  private buffer = '';

  private constructor(private readonly req: http.ClientRequest) {}

  static open(port: number, token?: string): Promise<EventReader> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/api/events', headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
      const reader = new EventReader(req);
      req.once('error', reject);
      req.once('response', (response) => {
        if (response.statusCode !== 200) {
          reject(new Error(`events: HTTP ${response.statusCode}`));
          return;
        }
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => reader.push(chunk));
        resolve(reader);
      });
    });
  }

  /** Resolves with the first event (after index `from`) that matches. */
  async next(match: (event: StreamEvent) => boolean, timeoutMs = 5_000, from = 0): Promise<StreamEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find(match);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no matching event within ${timeoutMs} ms; got ${this.events.map((e) => e.name).join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  close(): void {
    this.req.destroy();
  }

  private push(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const name = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1];
      this.events.push({ name, data: data === undefined ? undefined : JSON.parse(data), at: Date.now() });
    }
  }
}

/** Parses the Prometheus text format: `name{labels}` to value. */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}
