import type { DispatchMode } from './config';

/**
 * Which worker the next task goes to. A member is `open` (it takes a task now), `full` (it serves
 * but holds all it may) or `down` (not serving: starting, backing off, redelivering).
 *
 * - `round-robin` (the default): task n of the acceptance order goes to the next member of the
 *   ring. A full member is waited for, so the order holds under load, not only one task at a time;
 *   a down member is passed over until it is back, without disturbing the order of the others.
 * - `least-loaded`: the open member holding the fewest tasks, ties in ring order; one busy with a
 *   long synchronous task (its queue cannot move) only when all are. For uneven work, where one
 *   long task would hold up the tasks queued behind it on its worker.
 */
export type Availability = 'open' | 'full' | 'down';

export interface RingMember {
  availability(): Availability;
  /** Tasks it holds now; only least-loaded reads it. */
  readonly inflightCount: number;
  /** Its worker is busy with a synchronous task that has run a while; only least-loaded reads it. */
  readonly blocked: boolean;
}

export class RoundRobin<Member extends RingMember> {
  private cursor = 0;

  constructor(
    private readonly members: readonly Member[],
    private readonly mode: DispatchMode = 'round-robin',
  ) {}

  /** The member the next task goes to, or undefined when it must wait. */
  next(): Member | undefined {
    return this.mode === 'round-robin' ? this.nextInRing() : this.leastLoaded();
  }

  private nextInRing(): Member | undefined {
    const count = this.members.length;
    for (let step = 0; step < count; step += 1) {
      const index = (this.cursor + step) % count;
      const member = this.members[index] as Member;
      const availability = member.availability();
      if (availability === 'down') continue;
      if (availability === 'full') return undefined;
      this.cursor = (index + 1) % count;
      return member;
    }
    return undefined;
  }

  private leastLoaded(): Member | undefined {
    const count = this.members.length;
    let best: Member | undefined;
    let bestIndex = 0;
    for (let step = 0; step < count; step += 1) {
      const index = (this.cursor + step) % count;
      const member = this.members[index] as Member;
      if (member.availability() !== 'open') continue;
      if (
        best === undefined ||
        (best.blocked && !member.blocked) ||
        (best.blocked === member.blocked && member.inflightCount < best.inflightCount)
      ) {
        best = member;
        bestIndex = index;
      }
    }
    if (best !== undefined) this.cursor = (bestIndex + 1) % count;
    return best;
  }
}
