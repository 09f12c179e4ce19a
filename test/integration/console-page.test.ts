import { expect } from 'chai';
import type { Page } from 'playwright-core';
import path from 'node:path';
import { ROOT, startCluster, stopClusters, testDir, until, type Cluster } from '../helpers/cluster';
import { launchBrowser, type Browser } from '../helpers/browser';
import { request } from '../helpers/http';

async function httpCluster(args: string[] = []): Promise<Cluster & { httpPort: number }> {
  return (await startCluster({ args: ['--http-port', '0', '--quiet', ...args] })) as Cluster & { httpPort: number };
}

/** The pid each worker card shows, by slot. */
async function cardPids(page: Page): Promise<Record<string, string>> {
  return page.$$eval('.card', (cards) =>
    Object.fromEntries(cards.map((card) => [(card as HTMLElement).dataset.slot, card.querySelector('[data-field="pid"]')?.textContent ?? ''])),
  );
}

describe('the console page, in a real browser (headless chromium)', function () {
  this.timeout(60_000);
  let browser: Browser | undefined;
  const errors: string[] = [];

  async function open(cluster: Cluster & { httpPort: number }, options: Parameters<typeof launchBrowser>[0] = {}): Promise<Page> {
    browser = await launchBrowser(options);
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      // The browser reports every 4xx answer as an error; those the tests ask for are not one.
      const expected = /Failed to load resource: the server responded with a status of (401|422)/.test(message.text());
      if (message.type() === 'error' && !expected) errors.push(message.text());
    });
    const started = Date.now();
    await page.goto(`http://127.0.0.1:${cluster.httpPort}/`, { waitUntil: 'load' });
    await page.waitForSelector('.card[data-slot="3"]');
    console.log(`      page loaded and drew three cards in ${Date.now() - started} ms`);
    return page;
  }

  afterEach(async () => {
    await browser?.close();
    browser = undefined;
    await stopClusters();
    const seen = errors.splice(0);
    expect(seen, 'errors in the page').to.deep.equal([]);
  });

  it('shows a card per worker with the pids of stats, and a kill -9 as a new pid, live, without a reload', async function () {
    const cluster = await httpCluster();
    const page = await open(cluster);
    const stats = (await request(cluster.httpPort, '/api/stats')).json as { workers: { slot: number; pid: number }[] };
    expect(await cardPids(page)).to.deep.equal(Object.fromEntries(stats.workers.map((worker) => [String(worker.slot), String(worker.pid)])));
    await page.waitForSelector('#live.on');

    const old = stats.workers[1]?.pid as number;
    const killedAt = Date.now();
    process.kill(old, 'SIGKILL');
    await page.waitForFunction((pid) => {
      const shown = document.querySelector('.card[data-slot="2"] [data-field="pid"]')?.textContent;
      return shown !== String(pid) && shown !== '–' && document.querySelector('.card[data-slot="2"]')?.getAttribute('data-state') === 'ready';
    }, old, { timeout: 5_000 });
    console.log(`      kill -9 -> card 2 ready with a new pid in ${Date.now() - killedAt} ms`);
    const now = (await request(cluster.httpPort, '/api/stats')).json as { workers: { pid: number; restarts: number }[] };
    expect((await cardPids(page))['2']).to.equal(String(now.workers[1]?.pid));
    expect(await page.textContent('.card[data-slot="2"] [data-field="restarts"]')).to.equal('1');
  });

  it('runs a task from the form and shows its result and the worker that ran it', async function () {
    const cluster = await httpCluster();
    const page = await open(cluster);
    await page.selectOption('#submit-kind', 'text');
    await page.fill('#submit-payload', 'hola navegador');
    await page.click('#submit-form button[type=submit]');
    await page.waitForSelector('#submit-output[data-status="done"]');
    const worker = await page.getAttribute('#submit-output', 'data-worker');
    expect(await page.textContent('#submit-output')).to.include(`Task 'hola navegador' processed by worker ${worker}`);

    await page.selectOption('#submit-kind', 'sleep');
    await page.fill('#submit-payload', '{"ms": "soon"}');
    await page.click('#submit-form button[type=submit]');
    await page.waitForSelector('#submit-output[data-status="failed"]');
    expect(await page.textContent('#submit-output')).to.equal('BAD_PAYLOAD: payload.ms must be a number, not a string');
  });

  it('reloads the workers from its button, the cards showing every new pid, and runs a task with retries', async function () {
    const dir = await testDir();
    const cluster = await httpCluster(['--handlers', path.join(ROOT, 'test', 'fixtures', 'ops-kinds.js')]);
    const page = await open(cluster);
    await page.waitForSelector('#live.on');
    const before = await cardPids(page);
    await page.click('#reload-button');
    await page.waitForSelector('#reload-output[data-status="done"]', { timeout: 20_000 });
    expect(await page.textContent('#reload-output')).to.match(/^reloaded in \d+ ms$/);
    const stats = (await request(cluster.httpPort, '/api/stats')).json as { workers: { slot: number; pid: number }[] };
    await page.waitForFunction(
      (pids) => Array.from(document.querySelectorAll('.card')).every((card) => card.querySelector('[data-field="pid"]')?.textContent === pids[(card as HTMLElement).dataset.slot ?? '']),
      Object.fromEntries(stats.workers.map((worker) => [String(worker.slot), String(worker.pid)])),
      { timeout: 5_000 },
    );
    for (const slot of ['1', '2', '3']) expect((await cardPids(page))[slot]).not.to.equal(before[slot]);
    expect(await page.textContent('.card[data-slot="1"] [data-field="restarts"]')).to.equal('0');

    await page.selectOption('#submit-kind', 'flaky');
    await page.fill('#submit-payload', JSON.stringify({ dir, key: 'page', failures: 1 }));
    await page.fill('#submit-retries', '2');
    await page.click('#submit-form button[type=submit]');
    await page.waitForSelector('#submit-output[data-status="done"]');
    expect(await page.textContent('#submit-output')).to.match(/after 2 attempts/);
  });

  it('searches the results, pages back through them, and opens a task with its result', async function () {
    const cluster = await httpCluster();
    const client = await cluster.connect();
    await Promise.all(Array.from({ length: 120 }, (_, i) => client.submit('text', i % 20 === 0 ? `findme ${i}` : `other ${i}`)));
    const page = await open(cluster);
    await page.waitForFunction(() => document.querySelectorAll('#results tbody tr').length === 50);
    await page.click('#results-older');
    await page.waitForFunction(() => document.querySelectorAll('#results tbody tr').length === 100);

    await page.fill('#results-q', 'FINDME');
    await page.click('#results-form button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#results tbody tr').length === 6);
    const tasks = await page.$$eval('#results tbody tr td:nth-child(5)', (cells) => cells.map((cell) => cell.textContent));
    expect(tasks.sort()).to.deep.equal(['findme 0', 'findme 100', 'findme 20', 'findme 40', 'findme 60', 'findme 80']);
    expect(await page.isHidden('#results-older')).to.equal(true);

    await page.click('#results tbody tr:first-child');
    await page.waitForSelector('#task-dialog[open]');
    const text = await page.textContent('#task-text');
    expect(await page.textContent('#task-result')).to.match(new RegExp(`^Task '${text}' processed by worker \\d$`));
  });

  it('asks for the token once when the cluster has one, and keeps it for the tab', async function () {
    const token = 'page-token-123456';
    const cluster = await httpCluster(['--token', token]);
    browser = await launchBrowser();
    const page = await browser.context.newPage();
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`http://127.0.0.1:${cluster.httpPort}/`);
    await page.waitForSelector('#token-dialog[open]');
    await page.fill('#token-input', token);
    await page.click('#token-form button[type=submit]');
    await page.waitForSelector('.card[data-slot="3"]');
    await page.waitForSelector('#live.on');
    await page.reload();
    await page.waitForSelector('.card[data-slot="3"]');
    expect(await page.isVisible('#token-dialog')).to.equal(false);
  });

  it('fits a phone screen and follows dark mode', async function () {
    const cluster = await httpCluster();
    const page = await open(cluster, { colorScheme: 'dark', viewport: { width: 390, height: 844 } });
    const layout = await page.evaluate(() => ({
      overflow: document.documentElement.scrollWidth - window.innerWidth,
      background: getComputedStyle(document.body).backgroundColor,
      cardWidth: document.querySelector('.card')?.getBoundingClientRect().width ?? 0,
    }));
    expect(layout.overflow, 'no sideways scrolling').to.be.at.most(0);
    expect(layout.background).to.equal('rgb(20, 20, 22)');
    expect(layout.cardWidth).to.be.above(300);
    await until(async () => (await page.$$('.u-over')).length === 2, 3_000, 'the two charts');
  });
});
