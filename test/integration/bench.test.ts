import { expect } from 'chai';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { runCli, stopClis } from '../helpers/cli';
import { ROOT } from '../helpers/cluster';
import { makeTempDir, processesMentioning, until } from '../helpers/cluster';

interface BenchJson {
  figures: Record<string, { median: number; runs: number[]; met?: boolean }>;
  failed: number;
}

/** `npm run bench`, without the build. */
const BENCH = [process.execPath, path.join(ROOT, 'dist', 'bench', 'main.js')];

describe('npm run bench (tiny runs: it works, not how fast)', function () {
  this.timeout(60_000);
  let tmp: string;
  beforeEach(async () => {
    // The bench's own cluster and bare chain make their temp directories here, and name them in
    // every command line they start: what is left behind can be found.
    tmp = await makeTempDir();
  });
  afterEach(async () => {
    await stopClis();
    await rm(tmp, { recursive: true, force: true });
  });

  it('measures every figure with --json, fails no task, and leaves no process or directory', async function () {
    const run = await runCli(['--runs', '1', '--tasks', '2000', '--duration-ms', '300', '--json'], {
      command: BENCH,
      env: { TMPDIR: tmp },
      timeoutMs: 50_000,
    });
    expect(run.code, run.stderr).to.equal(0);
    const report = JSON.parse(run.stdout) as BenchJson;
    expect(report.failed).to.equal(0);
    expect(Object.keys(report.figures)).to.include.members([
      'saturation',
      'saturation.leastLoaded',
      'latency10.p50',
      'latency10.p99',
      'serial',
      'serial.floor',
      'recovery.ready',
      'tail.p99',
      'tail.floorP99',
      'tail.ratio',
      'serial.ratio',
      'reload.ms',
      'reload.p99',
      'memory.primaryRss',
    ]);
    for (const [key, figure] of Object.entries(report.figures)) {
      expect(figure.runs, key).to.have.length(1);
      expect(figure.median, key).to.be.a('number').and.to.be.at.least(0);
    }
    expect(report.figures.saturation?.median).to.be.above(0);
    expect(report.figures['saturation.leastLoaded']?.median).to.be.above(0);
    expect(report.figures['serial.floor']?.median).to.be.above(0);
    expect(report.figures['tail.floorP99']?.median).to.be.above(0);
    expect(report.figures['tail.ratio']?.median).to.be.above(0);
    expect(report.figures['serial.ratio']?.median).to.be.above(0);
    expect(report.figures['reload.ms']?.median).to.be.above(0);

    await until(() => processesMentioning(tmp).length === 0, 5_000, 'the bench cluster and bare chain to exit');
    expect(await readdir(tmp)).to.deep.equal([]);
  });

  it('names a bad option and where the options are, with exit code 2', async function () {
    const run = await runCli(['--runs', '0'], { command: BENCH });
    expect(run.code).to.equal(2);
    expect(run.stderr).to.equal('ronda bench: --runs must be at least 1\nrun "npm run bench -- --help" for the options\n');
  });

  it('prints the table, bare chain included, for one phase', async function () {
    const run = await runCli(['--runs', '1', '--phases', 'serial', '--duration-ms', '200'], {
      command: BENCH,
      env: { TMPDIR: tmp },
      timeoutMs: 50_000,
    });
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/one at a time \(seed-style\) \(tasks\/s\) +[\d,]+ /);
    expect(run.stdout).to.match(/one at a time, bare chain \(the floor\) \(tasks\/s\) +[\d,]+ /);
    expect(run.stdout).to.match(/saturation, 4x256 in flight \(tasks\/s\) +- +- +-/);
  });
});
