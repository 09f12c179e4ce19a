/**
 * The primary's entry point: `npm start -- [options]`. Reads the configuration, starts the
 * cluster, and turns Ctrl-C / SIGTERM into an orderly shutdown (a second one forces it).
 */
// First: SIGHUP must not end the primary while the rest of its modules load (see early-signals).
import { earlyHangups, releaseEarlyHangups } from './early-signals';
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadServerConfig, SERVER_USAGE, SERVER_USAGE_HINT } from './config';
import { Logger } from '../shared/logger';
import { packageVersion } from '../shared/version';
import { Primary } from './primary';
import { messageOf } from '../shared/errors';
import type { Ready } from '../shared/launch';

const WORKER_SCRIPT = path.join(__dirname, '..', 'worker', 'main.js');

/**
 * The folder that holds Ronda's own packages (zod among them), added to the workers' NODE_PATH:
 * a handlers module kept outside the project can then `require('zod')` like one inside it.
 */
function packagesFolder(): string | undefined {
  let folder = path.dirname(require.resolve('zod'));
  while (path.basename(folder) !== 'node_modules') {
    const parent = path.dirname(folder);
    if (parent === folder) return undefined;
    folder = parent;
  }
  return folder;
}

function workerEnvironment(): NodeJS.ProcessEnv {
  const packages = packagesFolder();
  if (packages === undefined) return process.env;
  const paths = [process.env.NODE_PATH, packages].filter((entry) => entry !== undefined && entry !== '');
  return { ...process.env, NODE_PATH: paths.join(path.delimiter) };
}

async function main(): Promise<void> {
  const loaded = loadServerConfig(process.argv.slice(2), process.env);
  if (!loaded.ok) {
    process.stderr.write(`ronda: ${loaded.message}\n${SERVER_USAGE_HINT}\n`);
    process.exit(2);
  }
  const { config, warnings } = loaded;
  if (config.help) {
    process.stdout.write(`${SERVER_USAGE}\n`);
    return;
  }
  if (config.version) {
    process.stdout.write(`${packageVersion()}\n`);
    return;
  }
  if (config.handlers !== undefined && !existsSync(path.resolve(config.handlers))) {
    process.stderr.write(`ronda: --handlers ${config.handlers}: no such file (${path.resolve(config.handlers)})\n`);
    process.exit(2);
  }
  process.title = 'ronda primary';
  // Writes to a log nobody reads any more fail with EPIPE: the Logger stops writing, the cluster
  // goes on (stderr carries only start-up errors).
  process.stderr.on('error', () => undefined);
  const logger = new Logger({ quiet: config.quiet });
  for (const warning of warnings) logger.warn('primary', warning);
  const primary = new Primary(config, logger, WORKER_SCRIPT, workerEnvironment());

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      if (signals > 2) return; // already forcing
      logger.warn('primary', `${signal} again: forcing shutdown; every task not finished is answered SHUTTING_DOWN`);
      void primary.forceClose().finally(() => process.exit(1));
      return;
    }
    logger.info('primary', `${signal}: shutting down (again to force)`);
    primary.close().then(
      // A forced shutdown ends with 1 whichever path gets here first.
      () => process.exit(signals > 1 ? 1 : 0),
      (error: unknown) => {
        logger.error('primary', `shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  // Every other signal whose default is to end the process would end the primary at once, every
  // accepted task with it: Ctrl-\ (SIGQUIT), a tool's SIGUSR2 (nodemon),
  // a resource limit (SIGXCPU, SIGXFSZ), a UPS (SIGPWR), a stray timer signal. Each stops it in
  // order instead. (SIGUSR1 is Node's: it opens the inspector on 127.0.0.1:9229.)
  for (const signal of SHUTDOWN_SIGNALS) process.on(signal, onSignal);
  // SIGHUP reloads, as daemons do: a rolling replacement of every worker (see Dispatcher.reload).
  process.on('SIGHUP', () => {
    logger.info('primary', 'SIGHUP: reloading the workers');
    void primary.reload().then((answer) => {
      if ('code' in answer && answer.code !== 'RELOAD_FAILED') logger.warn('primary', `SIGHUP: no reload: ${answer.message}`);
    });
  });
  releaseEarlyHangups();
  if (earlyHangups.count > 0) {
    logger.info('primary', 'SIGHUP while starting: nothing to reload yet (the workers load the handlers module as they start)');
  }

  try {
    const address = await primary.start();
    if (config.readyFile !== undefined) {
      const { httpPort } = primary;
      await writeReadyFile(config.readyFile, {
        pid: process.pid,
        host: address.address,
        port: address.port,
        ...(httpPort === undefined ? {} : { httpPort }),
      });
    }
  } catch (error) {
    logger.error('primary', `could not start: ${messageOf(error)}`);
    void primary.forceClose().finally(() => process.exit(1));
  }
}

/**
 * Says where the cluster listens, for a program that started it with --port 0 (the bench, a test
 * harness), so that nothing has to read the log. Written whole or not at all (a rename).
 */
async function writeReadyFile(file: string, ready: Ready): Promise<void> {
  const partial = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(partial, `${JSON.stringify(ready)}\n`);
    await rename(partial, file);
  } catch (error) {
    throw new Error(`cannot write --ready-file ${file}: ${messageOf(error)}`);
  }
}

const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGINT',
  'SIGTERM',
  'SIGQUIT',
  'SIGUSR2',
  'SIGALRM',
  'SIGVTALRM',
  'SIGXCPU',
  'SIGXFSZ',
  ...(process.platform === 'linux' ? (['SIGPWR'] as const) : []),
];

void main();
