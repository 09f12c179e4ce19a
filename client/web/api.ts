/**
 * The page's way to the primary: JSON requests with the token (asked for once, kept for the tab)
 * and the event stream, read with fetch so that it can carry the token too (EventSource cannot
 * send a header).
 */

const TOKEN_KEY = 'ronda-token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
  }
}

let askingForToken: Promise<void> | undefined;

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token === null ? extra : { ...extra, authorization: `Bearer ${token}` };
}

/** Shows the token dialog until the user gives one; every request waiting for it then retries. */
function askForToken(): Promise<void> {
  askingForToken ??= new Promise<void>((resolve) => {
    const dialog = document.getElementById('token-dialog') as HTMLDialogElement;
    const form = document.getElementById('token-form') as HTMLFormElement;
    const input = document.getElementById('token-input') as HTMLInputElement;
    form.addEventListener(
      'submit',
      () => {
        sessionStorage.setItem(TOKEN_KEY, input.value);
        askingForToken = undefined;
        resolve();
      },
      { once: true },
    );
    dialog.showModal();
  });
  return askingForToken;
}

/** A JSON request; a 401 asks for the token and tries again; other errors reject with ApiError. */
export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  for (;;) {
    const used = sessionStorage.getItem(TOKEN_KEY);
    const response = await fetch(path, {
      method: init.method ?? 'GET',
      headers: headers(init.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    });
    if (response.status === 401) {
      // A token given meanwhile (for another request) is tried before asking again.
      if (sessionStorage.getItem(TOKEN_KEY) === used) await askForToken();
      continue;
    }
    const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (!response.ok) {
      const error = (body.error ?? {}) as { code?: string; message?: string };
      throw new ApiError(response.status, error.code ?? 'HTTP', error.message ?? response.statusText, body);
    }
    return body as T;
  }
}

export type EventHandler = (name: string, data: unknown) => void;

/**
 * Reads /api/events for as long as the page is open, reconnecting a second after it drops;
 * `onState` says whether the stream is up.
 */
export async function followEvents(onEvent: EventHandler, onState: (up: boolean) => void): Promise<never> {
  for (;;) {
    const used = sessionStorage.getItem(TOKEN_KEY);
    try {
      const response = await fetch('/api/events', { headers: headers({ accept: 'text/event-stream' }) });
      if (response.status === 401) {
        onState(false);
        if (sessionStorage.getItem(TOKEN_KEY) === used) await askForToken();
        continue;
      }
      if (!response.ok || response.body === null) throw new Error(`events: HTTP ${response.status}`);
      onState(true);
      await readStream(response.body, onEvent);
    } catch {
      // Dropped or refused: say so, and try again shortly.
    }
    onState(false);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

async function readStream(body: ReadableStream<Uint8Array>, onEvent: EventHandler): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data !== '') onEvent(name, JSON.parse(data));
    }
  }
}
