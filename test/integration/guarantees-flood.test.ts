import { expect } from 'chai';
import net from 'node:net';
import { memoryMb, startCluster, stopClusters } from '../helpers/cluster';
import { closeRawClients, rawClient } from '../helpers/raw-client';

/** Tasks the flooder tries to send, if time allows. */
const FLOOD_TASKS = 1_000_000;
const LINES_PER_WRITE = 1_000;
/** Phases: not reading at all, then reading 10 ms in every 100, then reading as fast as it can. */
const NOT_READING_MS = 6_000;
const SLOW_READING_MS = 4_000;
const FAST_READING_MS = 10_000;
/** A generous bound for the test; the aim (docs/guarantees.md) is under 200 MB. */
const RSS_LIMIT_MB = 300;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('guarantees: a client flooding tasks and not reading its replies', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it(`keeps the primary's memory bounded (under ${RSS_LIMIT_MB} MB) and stops reading the flooder`, async function () {
    this.timeout(60_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const observer = await rawClient(cluster.port);
    const baselineMb = memoryMb(cluster.pid, 'VmRSS');
    let peakMb = baselineMb;
    const sampler = setInterval(() => {
      peakMb = Math.max(peakMb, memoryMb(cluster.pid, 'VmRSS'));
    }, 100);

    const flooder = net.connect(cluster.port, '127.0.0.1');
    await new Promise((resolve) => flooder.once('connect', resolve));
    flooder.on('error', () => undefined);
    flooder.pause();
    let replies = 0;
    flooder.on('data', (chunk: Buffer) => {
      for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) replies += 1;
    });
    const batch = '{"type":"submit","payload":"x"}\n'.repeat(LINES_PER_WRITE);
    let sent = 0;
    let flooding = true;
    const writer = (async () => {
      while (flooding && sent < FLOOD_TASKS) {
        const more = flooder.write(batch);
        sent += LINES_PER_WRITE;
        if (!more) {
          await new Promise<void>((resolve) => {
            const check = setInterval(() => {
              if (!flooding || flooder.writableNeedDrain === false) {
                clearInterval(check);
                resolve();
              }
            }, 10);
          });
        }
      }
    })();

    try {
      // Not reading: once the replies back up, the server must stop reading this client.
      await sleep(NOT_READING_MS / 2);
      const acceptedEarly = (await observer.stats()).accepted;
      await sleep(NOT_READING_MS / 2);
      const acceptedLate = (await observer.stats()).accepted;
      const sentNotReading = sent;

      // Reading slowly, then fast.
      const slowUntil = Date.now() + SLOW_READING_MS;
      while (Date.now() < slowUntil) {
        flooder.resume();
        await sleep(10);
        flooder.pause();
        await sleep(90);
      }
      flooder.resume();
      const fastUntil = Date.now() + FAST_READING_MS;
      while (Date.now() < fastUntil && sent < FLOOD_TASKS) await sleep(50);
      flooding = false;
      await writer;

      const stats = await observer.stats();
      const hwmMb = memoryMb(cluster.pid, 'VmHWM');
      process.stdout.write(
        `      flood: ${sent} tasks written, ${replies} replies read, ${stats.accepted} accepted; ` +
          `not reading: accepted ${acceptedEarly} -> ${acceptedLate}, ${sentNotReading} written; ` +
          `primary RSS ${baselineMb.toFixed(0)} MB at start, peak sampled ${peakMb.toFixed(0)} MB, VmHWM ${hwmMb.toFixed(0)} MB\n`,
      );
      expect(acceptedLate, 'tasks accepted while the flooder read nothing').to.equal(acceptedEarly);
      expect(acceptedLate, 'the server took some of the flood before pausing').to.be.above(0);
      expect(replies, 'replies the flooder read').to.be.above(acceptedLate);
      expect(hwmMb).to.be.below(RSS_LIMIT_MB);
      expect(peakMb).to.be.below(RSS_LIMIT_MB);
    } finally {
      flooding = false;
      clearInterval(sampler);
      flooder.destroy();
    }

    // The flooder is gone; everyone else is still served.
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'after', payload: 'after' });
    expect(await client.reply('after', 15_000)).to.include({ type: 'done' });
  });
});
