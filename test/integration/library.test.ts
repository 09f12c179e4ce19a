import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect, RondaError } from '../../client/index';
import { ROOT, startCluster, stopClusters, testDir } from '../helpers/cluster';

interface Run {
  code: number | null;
  output: string;
}

/** Runs a command to its end, as a user would; a process that does not exit by itself fails. */
function run(command: string, args: readonly string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${path.basename(args[0] ?? command)} did not exit within ${options.timeoutMs ?? 20_000} ms: ${output}`));
    }, options.timeoutMs ?? 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** A folder outside the repository whose node_modules has Ronda as `npm install <checkout>` puts it. */
async function scratchProject(): Promise<string> {
  const dir = await testDir();
  await mkdir(path.join(dir, 'node_modules'));
  await symlink(ROOT, path.join(dir, 'node_modules', 'ronda'), 'dir');
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, dependencies: { ronda: `file:${ROOT}` } }));
  return dir;
}

/** What a promise rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const TSC_ARGS = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022'];
const TYPE_ROOTS = ['--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types')];

describe('the library: require("ronda") from code', function () {
  this.timeout(60_000);

  afterEach(async function () {
    await stopClusters();
  });

  it('runs examples/submit.js: 3,000 tasks at once, 1,000 per worker, a bad payload rejected by code, and it exits by itself', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const { code, output } = await run(process.execPath, [path.join(ROOT, 'examples', 'submit.js')], {
      cwd: ROOT,
      env: { RONDA_PORT: String(cluster.port), RONDA_HOST: '127.0.0.1' },
    });
    expect(code, output).to.equal(0);
    expect(output).to.include('fib(25) = 75025');
    expect(output).to.include('per worker: {"1":1000,"2":1000,"3":1000}');
    expect(output).to.include('a bad payload is refused: BAD_PAYLOAD');
    expect(output).to.match(/stored: task \S+ by worker \d: 75025/);
    expect(output).to.include('workers: 1:ready 2:ready 3:ready');
  });

  it('is required and imported by name from a project outside the repository, and exits after close()', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const dir = await scratchProject();
    await writeFile(
      path.join(dir, 'use.cjs'),
      `const { connect, RondaError } = require('ronda');
(async () => {
  const client = await connect({ port: ${cluster.port} });
  const replies = await Promise.all(Array.from({ length: 3000 }, (_, i) => client.submit('text', 't' + i)));
  const counts = {};
  for (const r of replies) counts[r.worker] = (counts[r.worker] || 0) + 1;
  let code;
  try { await client.submit('sleep', { ms: 'long' }); } catch (error) { code = error instanceof RondaError && error.code; }
  const rows = await client.results({ taskId: replies[0].taskId });
  const stats = await client.stats();
  await client.close();
  console.log(JSON.stringify({ counts, code, row: rows[0].task, workers: stats.workers.length }));
})();
`,
    );
    await writeFile(
      path.join(dir, 'use.mjs'),
      `import { connect } from 'ronda';
const client = await connect({ port: ${cluster.port} });
const done = await client.submit('hash', 'abc');
await client.close();
console.log(done.result);
`,
    );
    const cjs = await run(process.execPath, ['use.cjs'], { cwd: dir });
    expect(cjs.code, cjs.output).to.equal(0);
    expect(JSON.parse(cjs.output)).to.deep.equal({ counts: { 1: 1000, 2: 1000, 3: 1000 }, code: 'BAD_PAYLOAD', row: 't0', workers: 3 });
    const esm = await run(process.execPath, ['use.mjs'], { cwd: dir });
    expect(esm.code, esm.output).to.equal(0);
    expect(esm.output.trim()).to.equal('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('close() sends and answers every submit made before it, those waiting for the window too; later ones reject', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await connect({ port: cluster.port, maxInFlight: 4 });
    const submits = Array.from({ length: 12 }, (_, i) => client.submit('sleep', { ms: 100 }, { id: `s${i}` }).then((done) => done.taskId));
    const closing = client.close();
    const late = await rejection(client.submit('text', 'late'));
    expect(late).to.be.instanceOf(RondaError).and.to.include({ code: 'SHUTTING_DOWN' });
    const taskIds = await Promise.all(submits);
    expect(new Set(taskIds).size).to.equal(12);
    await closing;
    expect(await client.closed).to.be.instanceOf(Error);
  });

  it('rejects a task by its code, stops waiting on an abort, and bounds what it writes to the window', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1'] });
    const client = await connect({ port: cluster.port, maxInFlight: 2 });
    try {
      const error = await rejection(client.submit('fib', { n: 99 }));
      expect(error).to.be.instanceOf(RondaError).and.to.include({ code: 'BAD_PAYLOAD' });
      // Two long tasks fill the window; a third waits unsent and is given up.
      const first = client.submit('sleep', { ms: 400 });
      const second = client.submit('sleep', { ms: 400 });
      const controller = new AbortController();
      const third = client.submit('text', 'never sent', { signal: controller.signal, id: 'third' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect((await client.stats()).accepted, 'the third is not sent while the window is full').to.equal(3); // fib, and the two sleeps
      controller.abort(new Error('changed my mind'));
      expect(await rejection(third)).to.have.property('message', 'changed my mind');
      await Promise.all([first, second]);
      expect(await client.results({ taskId: 'third' })).to.deep.equal([]);
    } finally {
      await client.close();
    }
  });

  it('type-checks a TypeScript file that uses it under strict, and catches one that misuses it', async function () {
    const dir = await scratchProject();
    await writeFile(
      path.join(dir, 'good.ts'),
      `import { connect, RondaError, type TaskResult, type ResultRow } from 'ronda';
export async function main(): Promise<number> {
  const client = await connect({ host: '127.0.0.1', port: 5000, connectTimeoutMs: 1000 });
  const done: TaskResult = await client.submit('fib', { n: 3 }, { id: 'a1', timeoutMs: 2000, signal: AbortSignal.timeout(5000) });
  const rows: ResultRow[] = await client.results({ taskId: done.taskId, limit: 1 });
  const stats = await client.stats();
  try {
    await client.submit('fib', { n: 99 });
  } catch (error) {
    if (error instanceof RondaError) console.log(error.code.toLowerCase());
  }
  await client.close();
  return done.worker + rows.length + stats.workers.length;
}
`,
    );
    await writeFile(
      path.join(dir, 'bad.ts'),
      `import { connect } from 'ronda';
export async function main(): Promise<string> {
  const client = await connect({ port: '5000' });
  const done = await client.submit('fib', { n: 3 });
  return done.worker;
}
`,
    );
    const good = await run(process.execPath, [TSC, ...TSC_ARGS, ...TYPE_ROOTS, 'good.ts'], { cwd: dir, timeoutMs: 50_000 });
    expect(good.code, good.output).to.equal(0);
    const bad = await run(process.execPath, [TSC, ...TSC_ARGS, ...TYPE_ROOTS, 'bad.ts'], { cwd: dir, timeoutMs: 50_000 });
    expect(bad.code).to.not.equal(0);
    expect(bad.output).to.include("Type 'string' is not assignable to type 'number'");
    expect(bad.output).to.include("Type 'number' is not assignable to type 'string'");
  });
});
