/**
 * The HTTP path of the bench: POST /api/tasks at saturation over keep-alive connections (a fixed
 * number of requests in flight, each sent when one is answered), and a console subscribed to
 * /api/events that reads everything, as a browser tab would, while the TCP load runs.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

export interface HttpSaturation {
  tasksPerS: number;
  tasks: number;
  failed: number;
  firstFailure: string | undefined;
}

function post(agent: http.Agent, port: number, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/api/tasks', method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
        response.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `tasks` text tasks through POST /api/tasks, `inFlight` at a time over as many kept-alive sockets. */
export async function httpSaturate(port: number, tasks: number, inFlight: number): Promise<HttpSaturation> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: inFlight });
  let submitted = 0;
  let completed = 0;
  let failed = 0;
  let firstFailure: string | undefined;
  const startedAt = performance.now();
  try {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (submitted < tasks) {
          const n = submitted++;
          try {
            const reply = await post(agent, port, `{"kind":"text","payload":"bench ${n}"}`);
            if (reply.status !== 200) {
              failed += 1;
              firstFailure ??= `HTTP ${reply.status}: ${reply.text.slice(0, 200)}`;
            }
          } catch (error) {
            failed += 1;
            firstFailure ??= String(error);
          }
          completed += 1;
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  const elapsedMs = performance.now() - startedAt;
  return { tasksPerS: (completed / elapsedMs) * 1000, tasks: completed, failed, firstFailure };
}

/** A console on /api/events that reads every event; close() ends it and says how many bytes came. */
export function subscribeConsole(port: number): Promise<{ close(): number }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const req = http.get({ host: '127.0.0.1', port, path: '/api/events' }, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`/api/events answered ${response.statusCode}`));
        return;
      }
      response.on('data', (chunk: Buffer) => (bytes += chunk.length));
      response.on('error', () => undefined);
      resolve({
        close: () => {
          req.destroy();
          return bytes;
        },
      });
    });
    req.on('error', reject);
  });
}
