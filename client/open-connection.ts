/**
 * Opening a connection for a command: connect, say hello (which also checks the token and learns
 * the server's task kinds), and turn every way that can fail into one sentence for a person.
 */
import { ErrorCode, messageOf, RondaError } from '../shared/errors';
import { addressOf } from './cli-options';
import { RondaConnection, type HelloReply } from './ronda-connection';

export interface ServerAddress {
  host: string;
  port: number;
  token?: string | undefined;
}

export interface OpenedConnection {
  connection: RondaConnection;
  hello: HelloReply;
}

/** Connects and says hello; rejects with an error whose message is ready to print. */
export async function openConnection(address: ServerAddress, connectTimeoutMs = 5_000): Promise<OpenedConnection> {
  try {
    const { host, port, token } = address;
    return opened(await RondaConnection.connect({ host, port, token, hello: true, connectTimeoutMs }));
  } catch (error) {
    throw new Error(describeConnectError(error, address));
  }
}

/** A connection made with `hello: true`, with the hello it got. */
export function opened(connection: RondaConnection): OpenedConnection {
  const hello = connection.server;
  if (hello === undefined) throw new Error('the server did not say hello');
  return { connection, hello };
}

/** Why a connection could not be made, as one line. */
export function describeConnectError(error: unknown, address: ServerAddress): string {
  const where = addressOf(address);
  if (error instanceof RondaError) {
    if (error.code === ErrorCode.UNAUTHORIZED) {
      return `the server at ${where} refused the token (${error.message}); pass --token or set RONDA_TOKEN`;
    }
    return `the server at ${where} refused the connection: ${error.message}`;
  }
  const code = errnoCode(error);
  switch (code) {
    case 'ECONNREFUSED':
      return `cannot connect to ${where}: no server is listening there (start one with: npm start)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${where}: unknown host "${address.host}"`;
    case 'ECONNRESET':
    case 'EPIPE':
      return `cannot connect to ${where}: the connection was reset`;
    default:
      return `cannot connect to ${where}: ${messageOf(error)}`;
  }
}

/** Why an open connection ended, as the end of a sentence. */
export function describeLostConnection(error: unknown): string {
  if (error instanceof RondaError) return error.message.replace(/^connection error: /, '');
  return messageOf(error);
}

function errnoCode(error: unknown): string | undefined {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code;
  return undefined;
}
