import { createHash, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../shared/logger';

/** Delay before the answer to the first failed authentication from an address; doubles each time. */
export const AUTH_FAILURE_BASE_DELAY_MS = 250;
export const AUTH_FAILURE_MAX_DELAY_MS = 5_000;
/** An address's count of failures is forgotten after this long without one. */
export const AUTH_FAILURE_MEMORY_MS = 60_000;
/** Addresses remembered at once; the oldest is forgotten first. */
const MAX_ADDRESSES = 10_000;
/** At most one log line per this long about failed authentications, with a count of the rest. */
const LOG_EVERY_MS = 1_000;

interface Failures {
  count: number;
  lastAt: number;
}

/**
 * Slows down guessing of the token and says that it happens. A failed `hello` (or anything else
 * first) from an address is answered only after a delay that doubles with each failure from that
 * address (250 ms, 500 ms, ... 5 s), so a loop of guesses from one address gets a handful a
 * second instead of thousands. A right token is never delayed. Failures are logged, at most one
 * line a second.
 */
export class AuthGuard {
  private readonly byAddress = new Map<string, Failures>();
  private lastLogAt = -Infinity;
  private unlogged = 0;

  constructor(
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** A right token from `address`: its count starts again. */
  succeeded(address: string): void {
    this.byAddress.delete(address);
  }

  /** Records a failure from `address` and returns how long to wait before answering it. */
  failed(address: string, why: string): number {
    const now = this.now();
    const known = this.byAddress.get(address);
    const failures = known !== undefined && now - known.lastAt < AUTH_FAILURE_MEMORY_MS ? known.count + 1 : 1;
    // Re-inserted, so that the map's order is oldest first.
    this.byAddress.delete(address);
    this.byAddress.set(address, { count: failures, lastAt: now });
    if (this.byAddress.size > MAX_ADDRESSES) this.byAddress.delete(this.byAddress.keys().next().value as string);
    const delay = Math.min(AUTH_FAILURE_BASE_DELAY_MS * 2 ** (failures - 1), AUTH_FAILURE_MAX_DELAY_MS);
    this.unlogged += 1;
    if (now - this.lastLogAt >= LOG_EVERY_MS) {
      const others = this.unlogged - 1;
      this.logger.warn(
        'primary',
        `authentication failed from ${address} (${why}; ${failures} in a row from there, answered after ${delay} ms)` +
          (others > 0 ? `; ${others} more failure(s) not shown` : ''),
      );
      this.lastLogAt = now;
      this.unlogged = 0;
    }
    return delay;
  }
}

/** Whether a token given equals the expected one, in time that does not depend on where they differ. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
