/**
 * Round-robin over a fixed ring of members, skipping those that cannot take work right now: with
 * every member available, picks go 1, 2, 3, 1, 2, 3, ...; a member that is down is passed over
 * until it is back, without disturbing the order of the others.
 */
export class RoundRobin<Member> {
  private cursor = 0;

  constructor(private readonly members: readonly Member[]) {}

  /** The next member, in ring order after the last one picked, for which `available` holds. */
  next(available: (member: Member) => boolean): Member | undefined {
    const count = this.members.length;
    for (let step = 0; step < count; step += 1) {
      const index = (this.cursor + step) % count;
      const member = this.members[index] as Member;
      if (available(member)) {
        this.cursor = (index + 1) % count;
        return member;
      }
    }
    return undefined;
  }
}
