/**
 * `npm run screenshot`: the pictures of the console in docs/, taken with the tests' browser
 * against a real cluster under a little load (with failures, and one worker killed, so that every
 * part of the page has something to show).
 */
import path from 'node:path';
import { launchBrowser } from './browser';
import { ROOT, startCluster, stopClusters } from './cluster';

const LOAD_SECONDS = 25;

async function main(): Promise<void> {
  const cluster = await startCluster({ args: ['--http-port', '0', '--quiet'] });
  try {
    const client = await cluster.connect();
    const until = Date.now() + LOAD_SECONDS * 1000;
    let n = 0;
    let killed = false;
    while (Date.now() < until) {
      const burst = 200 + Math.round(150 * Math.sin(n / 2_000));
      await Promise.all(
        Array.from({ length: burst }, (_, i) => {
          n += 1;
          if (i % 97 === 0) return client.submit('sleep', { ms: 'soon' });
          if (i % 31 === 0) return client.submit('fib', { n: 18 + (n % 6) });
          return client.submit('text', `order ${n}`);
        }),
      );
      if (!killed && Date.now() > until - (LOAD_SECONDS * 1000) / 2) {
        killed = true;
        const stats = await client.stats();
        process.kill(stats.workers[1]?.pid as number, 'SIGKILL');
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const [name, options] of [
      ['console.png', { viewport: { width: 1200, height: 1300 } }],
      ['console-phone-dark.png', { viewport: { width: 390, height: 1500 }, colorScheme: 'dark' as const }],
    ] as const) {
      const browser = await launchBrowser(options);
      try {
        const page = await browser.context.newPage();
        await page.goto(`http://127.0.0.1:${cluster.httpPort}/`);
        await page.waitForSelector('#live.on');
        await page.waitForTimeout(1_500);
        await page.screenshot({ path: path.join(ROOT, 'docs', name) });
        console.log(`docs/${name}`);
      } finally {
        await browser.close();
      }
    }
  } finally {
    await stopClusters();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
