/**
 * How the HTTP door fails: every error as `{ "error": { "code", "message" } }` with a TCP code and a
 * fixed status, including the failures Fastify and Node's parser meet before a route runs.
 */
import type { FastifyError } from 'fastify';
import type { Socket } from 'node:net';
import { ErrorCode, messageOf, type ErrorData } from '../../shared/errors';

/** The largest request body: a task as large as a TCP line may be. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** A request's headers and body must have arrived within this. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** The HTTP status of each error code. A task's own failure is a 4xx when the request was at fault. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  BAD_JSON: 400,
  BAD_MESSAGE: 400,
  BAD_UTF8: 400,
  LINE_TOO_LONG: 413,
  TOO_LARGE: 413,
  UNKNOWN_KIND: 422,
  BAD_PAYLOAD: 422,
  HANDLER_FAILED: 500,
  CANCELLED: 409,
  WORKER_LOST: 500,
  INTERNAL: 500,
  TIMEOUT: 504,
  DUPLICATE_ID: 409,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  IDLE_TIMEOUT: 408,
  TOO_MANY_CONNECTIONS: 503,
  SHUTTING_DOWN: 503,
  QUEUE_FULL: 503,
  RELOAD_FAILED: 500,
};

/** A failure that becomes an error body. */
export class HttpFailure extends Error {
  constructor(
    readonly error: ErrorData,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(error.message);
  }
}

export function badRequest(message: string): HttpFailure {
  return new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message });
}

/** Writes a whole error response on a raw socket and closes it (before or outside Fastify). */
export function answerRaw(socket: Socket, status: number, error: ErrorData): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\ncontent-type: application/json; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1_000).unref();
}

const STATUS_TEXT: Readonly<Record<number, string>> = { 400: 'Bad Request', 408: 'Request Timeout', 413: 'Payload Too Large', 431: 'Request Header Fields Too Large', 503: 'Service Unavailable' };

/** A request Node's parser refused (bad framing, headers too large, too slow): our body, not Node's. */
export function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  switch (error.code) {
    case 'HPE_HEADER_OVERFLOW':
      answerRaw(socket, 431, { code: ErrorCode.TOO_LARGE, message: 'the request headers are over 16 KiB' });
      return;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      answerRaw(socket, 408, { code: ErrorCode.IDLE_TIMEOUT, message: `the request did not arrive within ${REQUEST_TIMEOUT_MS} ms` });
      return;
    case 'ECONNRESET':
      socket.destroy();
      return;
    default:
      answerRaw(socket, 400, { code: ErrorCode.BAD_MESSAGE, message: `not a valid HTTP request (${error.code ?? error.message})` });
  }
}

export function toFailure(error: unknown): HttpFailure {
  if (error instanceof HttpFailure) return error;
  const fastifyError = error as FastifyError;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpFailure({ code: ErrorCode.TOO_LARGE, message: `the body is over ${MAX_BODY_BYTES} bytes (1 MiB), the limit of a task` });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      // Fastify's parser says the same for both, and keeps the reason to itself.
      return new HttpFailure({ code: ErrorCode.BAD_JSON, message: 'the body is not valid JSON, or has a "__proto__" or "constructor.prototype" field' });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpFailure({ code: ErrorCode.BAD_JSON, message: 'the body is empty; send the task as JSON' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message: 'send the body as JSON, with Content-Type: application/json' });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message: 'the Content-Length does not match the body' });
    default:
      break;
  }
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    return new HttpFailure({ code: ErrorCode.BAD_JSON, message: `the body is not valid JSON: ${messageOf(error)}` });
  }
  return new HttpFailure({ code: ErrorCode.INTERNAL, message: messageOf(error) });
}
