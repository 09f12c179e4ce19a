import { expect } from 'chai';
import { ReplyWriter, type WritableSocket } from '../../server/reply-writer';

/** A socket whose kernel buffer the test fills and drains by hand. */
class FakeSocket implements WritableSocket {
  writes: string[] = [];
  writableLength = 0;
  /** What a write may add before the socket says it is full. */
  room = Infinity;
  private drainListener: (() => void) | undefined;

  write(text: string): boolean {
    this.writes.push(text);
    this.writableLength += text.length;
    return this.writableLength <= this.room;
  }

  on(_event: 'drain', listener: () => void): this {
    this.drainListener = listener;
    return this;
  }

  /** The kernel took everything. */
  drain(): void {
    this.writableLength = 0;
    this.drainListener?.();
  }
}

const tick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

describe('ReplyWriter', function () {
  it('writes everything written in one turn as one write, on the next tick', async function () {
    const socket = new FakeSocket();
    let told = 0;
    const writer = new ReplyWriter(socket, () => (told += 1));
    writer.write('a\n');
    writer.write('b\n');
    expect(socket.writes).to.deep.equal([]);
    expect(writer.owedChars).to.equal(4);
    expect(writer.pending).to.equal(true);
    await tick();
    expect(socket.writes).to.deep.equal(['a\nb\n']);
    expect(told, 'the connection is told once the write is out').to.equal(1);
    expect(writer.pending).to.equal(false);
    writer.write('c\n');
    await tick();
    expect(socket.writes).to.deep.equal(['a\nb\n', 'c\n']);
  });

  it('counts what the socket still holds as owed, and says since when a client that reads nothing has been blocked', async function () {
    const socket = new FakeSocket();
    socket.room = 3;
    let told = 0;
    const writer = new ReplyWriter(socket, () => (told += 1));
    writer.write('12345\n');
    await tick();
    expect(writer.isBlocked).to.equal(true);
    const since = writer.blockedSince as number;
    expect(since).to.be.a('number');
    expect(writer.owedChars, 'in the socket, not yet read').to.equal(6);
    writer.write('more\n');
    await tick();
    expect(writer.blockedSince, 'blocked since the first full write').to.equal(since);
    expect(writer.owedChars).to.equal(11);
    socket.drain();
    expect(writer.isBlocked).to.equal(false);
    expect(writer.blockedSince).to.equal(undefined);
    expect(writer.owedChars).to.equal(0);
    expect(told, 'after each write and the drain').to.equal(3);
  });

  it('writes nothing once closed, not even what waited for the tick', async function () {
    const socket = new FakeSocket();
    const writer = new ReplyWriter(socket, () => undefined);
    writer.write('lost\n');
    writer.close();
    writer.write('after\n');
    await tick();
    expect(socket.writes).to.deep.equal([]);
    expect(writer.pending).to.equal(false);
  });
});
