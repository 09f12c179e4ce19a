/// <reference path="../../node_modules/uplot/dist/uPlot.d.ts" />
/**
 * The web console: the workers live, the last 10 minutes charted, a submit form, and the whole
 * history searchable. Plain DOM and uPlot: the page is a few tens of kilobytes and needs no build
 * step beyond tsc.
 */
import { api, ApiError, followEvents } from './api.js';

interface WorkerStats {
  slot: number;
  pid: number | null;
  state: string;
  done: number;
  failed: number;
  inflight: number;
  restarts: number;
  recycles?: number;
  uptimeMs: number;
  readyAt?: number;
  lastDeathAt?: number;
  problem?: string;
}

interface Stats {
  workers: WorkerStats[];
  queued: number;
  connections: number;
  accepted: number;
  uptimeMs: number;
}

interface SeriesPoint {
  t: number;
  done: number;
  failed: number;
  p50: number | null;
  p99: number | null;
}

interface PageRow {
  taskId: string;
  clientId: string | null;
  kind: string;
  status: 'done' | 'failed';
  worker: number;
  timestamp: string;
  task: string;
  taskChars: number;
  result: string | null;
  resultChars: number;
}

interface StoredRow {
  taskId: string;
  clientId: string | null;
  kind: string;
  task: string;
  result: unknown;
  status: string;
  worker: number;
  timestamp: string;
}

const SERIES_SECONDS = 600;
const PAGE_SIZE = 50;

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

function element<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const slotColor = (slot: number): string => `var(--slot${((slot - 1) % 6) + 1})`;

// ---- summary and workers --------------------------------------------------------------------

function renderSummary(stats: Stats): void {
  const ready = stats.workers.filter((worker) => worker.state === 'ready').length;
  const items: [string, string][] = [
    ['up', duration(stats.uptimeMs)],
    ['workers ready', `${ready}/${stats.workers.length}`],
    ['accepted', stats.accepted.toLocaleString()],
    ['queued', stats.queued.toLocaleString()],
    ['connections', String(stats.connections)],
  ];
  $('summary').replaceChildren(...items.map(([name, value]) => element('div', {}, element('dt', {}, name), element('dd', {}, value))));
}

const cards = new Map<number, { card: HTMLElement; pid: number | null }>();

function renderWorkers(workers: readonly WorkerStats[]): void {
  const container = $('workers');
  for (const worker of workers) {
    let entry = cards.get(worker.slot);
    if (entry === undefined) {
      const card = element('article', { className: 'card' });
      card.dataset.slot = String(worker.slot);
      card.style.setProperty('--slot', slotColor(worker.slot));
      container.append(card);
      entry = { card, pid: worker.pid };
      cards.set(worker.slot, entry);
    }
    const { card } = entry;
    if (entry.pid !== worker.pid) {
      card.classList.remove('flash');
      void card.offsetWidth; // restart the animation
      card.classList.add('flash');
      entry.pid = worker.pid;
    }
    const field = (name: string, label: string, value: string): HTMLElement[] => {
      const dd = element('dd', {}, value);
      dd.dataset.field = name;
      return [element('dt', {}, label), dd];
    };
    const state = element('span', { className: `state ${worker.state}` }, worker.state);
    state.dataset.field = 'state';
    card.dataset.state = worker.state;
    card.replaceChildren(
      element('h3', {}, `worker ${worker.slot}`, state),
      element(
        'dl',
        {},
        ...field('pid', 'pid', worker.pid === null ? '–' : String(worker.pid)),
        ...field('uptime', 'uptime', worker.state === 'ready' ? duration(worker.uptimeMs) : '–'),
        ...field('done', 'done', worker.done.toLocaleString()),
        ...field('failed', 'failed', worker.failed.toLocaleString()),
        ...field('inflight', 'in flight', String(worker.inflight)),
        ...field('restarts', 'restarts', String(worker.restarts)),
        ...field('recycles', 'recycles', String(worker.recycles ?? 0)),
        ...field('lastDeath', 'last death', worker.lastDeathAt === undefined ? 'never' : new Date(worker.lastDeathAt).toLocaleTimeString()),
      ),
      ...(worker.problem === undefined ? [] : [element('p', { className: 'problem' }, worker.problem)]),
    );
  }
}

function onStats(stats: Stats): void {
  renderSummary(stats);
  renderWorkers(stats.workers);
}

// ---- charts ----------------------------------------------------------------------------------

const series = { t: [] as number[], done: [] as number[], failed: [] as number[], p50: [] as (number | null)[], p99: [] as (number | null)[] };
let rateChart: uPlot | undefined;
let latencyChart: uPlot | undefined;

function addPoint(point: SeriesPoint): void {
  series.t.push(point.t / 1000);
  series.done.push(point.done);
  series.failed.push(point.failed);
  series.p50.push(point.p50);
  series.p99.push(point.p99);
  if (series.t.length > SERIES_SECONDS) for (const list of Object.values(series)) list.shift();
}

function chartOptions(target: HTMLElement, lines: { label: string; stroke: string }[]): uPlot.Options {
  const style = getComputedStyle(document.documentElement);
  const grid = { stroke: style.getPropertyValue('--line').trim() || '#ddd', width: 1 };
  const axis = { stroke: style.getPropertyValue('--dim').trim() || '#666', grid, ticks: grid };
  return {
    width: Math.max(280, target.clientWidth),
    height: 200,
    series: [{}, ...lines.map((line) => ({ label: line.label, stroke: line.stroke, width: 2, spanGaps: false }))],
    axes: [axis, axis],
    scales: { x: { time: true } },
    legend: { live: true },
  };
}

function drawCharts(): void {
  const rateTarget = $('rate-chart');
  const latencyTarget = $('latency-chart');
  if (rateChart === undefined) {
    const style = getComputedStyle(document.documentElement);
    const ok = style.getPropertyValue('--ok').trim();
    const bad = style.getPropertyValue('--bad').trim();
    rateChart = new uPlot(chartOptions(rateTarget, [{ label: 'done', stroke: ok }, { label: 'failed', stroke: bad }]), [series.t, series.done, series.failed], rateTarget);
    latencyChart = new uPlot(
      chartOptions(latencyTarget, [{ label: 'p50', stroke: style.getPropertyValue('--slot5').trim() }, { label: 'p99', stroke: style.getPropertyValue('--slot2').trim() }]),
      [series.t, series.p50, series.p99],
      latencyTarget,
    );
    new ResizeObserver(() => {
      rateChart?.setSize({ width: Math.max(280, rateTarget.clientWidth), height: 200 });
      latencyChart?.setSize({ width: Math.max(280, latencyTarget.clientWidth), height: 200 });
    }).observe(rateTarget);
    return;
  }
  rateChart.setData([series.t, series.done, series.failed]);
  latencyChart?.setData([series.t, series.p50, series.p99]);
}

// ---- submit ----------------------------------------------------------------------------------

const PLACEHOLDERS: Readonly<Record<string, string>> = {
  text: 'hello (any text)',
  sleep: '{"ms": 200}',
  fib: '{"n": 25}',
  hash: '"some text" or {"text": "...", "rounds": 1000}',
};

function fillKinds(kinds: readonly string[]): void {
  const submitKind = $<HTMLSelectElement>('submit-kind');
  const filterKind = $<HTMLSelectElement>('results-kind');
  submitKind.replaceChildren(...kinds.map((kind) => element('option', { value: kind }, kind)));
  filterKind.replaceChildren(element('option', { value: '' }, 'any kind'), ...kinds.map((kind) => element('option', { value: kind }, kind)));
  const payload = $<HTMLTextAreaElement>('submit-payload');
  const update = (): void => {
    payload.placeholder = PLACEHOLDERS[submitKind.value] ?? 'JSON payload';
  };
  submitKind.onchange = update;
  update();
}

/** The payload as typed: JSON if it parses (and the kind is not `text`), else the text itself. */
function payloadOf(kind: string, text: string): unknown {
  if (kind === 'text') return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

async function submitTask(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const kind = $<HTMLSelectElement>('submit-kind').value;
  const text = $<HTMLTextAreaElement>('submit-payload').value;
  const timeout = $<HTMLInputElement>('submit-timeout').value;
  const retries = $<HTMLInputElement>('submit-retries').value;
  const output = $('submit-output');
  output.className = 'outcome';
  output.textContent = 'running…';
  delete output.dataset.status;
  try {
    const done = await api<{ taskId: string; worker: number; result: unknown; ms: number; attempts?: number }>('/api/tasks', {
      method: 'POST',
      body: {
        kind,
        payload: payloadOf(kind, text),
        ...(timeout === '' ? {} : { timeoutMs: Number(timeout) }),
        ...(retries === '' ? {} : { retries: Number(retries) }),
      },
    });
    output.className = 'outcome done';
    output.dataset.status = 'done';
    output.dataset.worker = String(done.worker);
    const tries = done.attempts === undefined || done.attempts === 1 ? '' : ` after ${done.attempts} attempts`;
    output.textContent = `done by worker ${done.worker} in ${done.ms} ms${tries} (task ${done.taskId}):\n${typeof done.result === 'string' ? done.result : JSON.stringify(done.result, null, 2)}`;
    void loadResults(true);
  } catch (error) {
    output.className = 'outcome failed';
    output.dataset.status = 'failed';
    output.textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  }
}

// ---- results ---------------------------------------------------------------------------------

let nextCursor: string | null = null;
let shown = 0;

function resultsQuery(): URLSearchParams {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  for (const name of ['q', 'kind', 'status', 'worker']) {
    const value = ($(`results-${name}`) as HTMLInputElement | HTMLSelectElement).value.trim();
    if (value !== '') query.set(name, value);
  }
  return query;
}

function preview(text: string | null, chars: number): string {
  if (text === null) return '';
  return chars > text.length ? `${text}…` : text;
}

async function loadResults(reset: boolean): Promise<void> {
  const query = resultsQuery();
  if (!reset && nextCursor !== null) query.set('before', nextCursor);
  const body = $('results').querySelector('tbody') as HTMLTableSectionElement;
  try {
    const page = await api<{ rows: PageRow[]; next: string | null }>(`/api/results?${query.toString()}`);
    if (reset) {
      body.replaceChildren();
      shown = 0;
    }
    for (const row of page.rows) {
      const tr = element(
        'tr',
        {},
        element('td', {}, new Date(row.timestamp).toLocaleString()),
        element('td', { className: 'slot-dot' }, String(row.worker)),
        element('td', {}, row.kind),
        element('td', { className: row.status }, row.status),
        element('td', { className: 'text', title: row.task }, preview(row.task, row.taskChars)),
        element('td', { className: 'text' }, preview(row.result, row.resultChars)),
      );
      (tr.children[1] as HTMLElement).style.setProperty('--slot', slotColor(row.worker));
      tr.dataset.taskId = row.taskId;
      tr.addEventListener('click', () => void openTask(row.taskId));
      body.append(tr);
    }
    shown += page.rows.length;
    nextCursor = page.next;
    $('results-count').textContent = shown === 0 ? 'no results' : `${shown.toLocaleString()} shown`;
    $('results-older').hidden = page.next === null;
  } catch (error) {
    $('results-count').textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  }
}

async function openTask(taskId: string): Promise<void> {
  const found = await api<{ state: string; worker?: number; row?: StoredRow }>(`/api/tasks/${encodeURIComponent(taskId)}`);
  $('task-title').textContent = `task ${taskId}`;
  const row = found.row;
  const fields: [string, string][] = [
    ['state', found.state],
    ['worker', String(row?.worker ?? found.worker ?? '–')],
    ['kind', row?.kind ?? '–'],
    ['client id', row?.clientId ?? '–'],
    ['stored', row === undefined ? 'not yet' : new Date(row.timestamp).toLocaleString()],
  ];
  $('task-fields').replaceChildren(...fields.flatMap(([name, value]) => [element('dt', {}, name), element('dd', {}, value)]));
  $('task-text').textContent = row?.task ?? '';
  $('task-result').textContent = row === undefined ? '' : typeof row.result === 'string' ? row.result : JSON.stringify(row.result, null, 2);
  const cancel = $<HTMLButtonElement>('task-cancel');
  cancel.hidden = row !== undefined;
  cancel.onclick = () => {
    cancel.disabled = true;
    api(`/api/tasks/${encodeURIComponent(taskId)}`, { method: 'DELETE' })
      .then(() => openTask(taskId))
      .catch((error: unknown) => ($('task-title').textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error)))
      .finally(() => (cancel.disabled = false));
  };
  const dialog = $<HTMLDialogElement>('task-dialog');
  if (!dialog.open) dialog.showModal();
}

// ---- reload ----------------------------------------------------------------------------------

/** A rolling reload (POST /api/reload); the cards show the new pids as each worker is replaced. */
async function reloadWorkers(): Promise<void> {
  const button = $<HTMLButtonElement>('reload-button');
  const output = $('reload-output');
  button.disabled = true;
  output.className = 'note';
  output.textContent = 'reloading…';
  delete output.dataset.status;
  try {
    const report = await api<{ workers: { slot: number; pid: number | null }[]; ms: number }>('/api/reload', { method: 'POST', body: {} });
    output.dataset.status = 'done';
    output.textContent = `reloaded in ${report.ms} ms`;
    fillKinds((await api<{ kinds: string[] }>('/api/kinds')).kinds);
  } catch (error) {
    output.className = 'note failed';
    output.dataset.status = 'failed';
    output.textContent = error instanceof ApiError ? `${error.code}: ${error.message}` : String(error);
  } finally {
    button.disabled = false;
  }
}

// ---- start -----------------------------------------------------------------------------------

async function start(): Promise<void> {
  $('submit-form').addEventListener('submit', (event) => void submitTask(event as SubmitEvent));
  $('results-form').addEventListener('submit', (event) => {
    event.preventDefault();
    void loadResults(true);
  });
  $('results-older').addEventListener('click', () => void loadResults(false));
  $('reload-button').addEventListener('click', () => void reloadWorkers());

  const [kinds, stats, history] = await Promise.all([
    api<{ kinds: string[] }>('/api/kinds'),
    api<Stats>('/api/stats'),
    api<{ seconds: SeriesPoint[] }>('/api/series'),
  ]);
  fillKinds(kinds.kinds);
  $<HTMLSelectElement>('results-worker').append(...stats.workers.map((worker) => element('option', { value: String(worker.slot) }, `worker ${worker.slot}`)));
  onStats(stats);
  for (const point of history.seconds) addPoint(point);
  drawCharts();
  void loadResults(true);

  const live = $('live');
  void followEvents(
    (name, data) => {
      if (name === 'stats') onStats(data as Stats);
      else if (name === 'tick') {
        addPoint(data as SeriesPoint);
        drawCharts();
      }
    },
    (up) => {
      live.textContent = up ? 'live' : 'reconnecting';
      live.className = `live ${up ? 'on' : 'off'}`;
    },
  );
}

void start();
