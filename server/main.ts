/**
 * The primary's entry point: `npm start -- [options]`. Reads the configuration, starts the
 * cluster, and turns Ctrl-C / SIGTERM into an orderly shutdown (a second one forces it).
 */
import path from 'node:path';
import { loadServerConfig, SERVER_USAGE, SERVER_USAGE_HINT } from '../shared/config';
import { Logger } from '../shared/logger';
import { packageVersion } from '../shared/version';
import { Primary } from './primary';

const WORKER_SCRIPT = path.join(__dirname, '..', 'worker', 'main.js');

async function main(): Promise<void> {
  const loaded = loadServerConfig(process.argv.slice(2), process.env);
  if (!loaded.ok) {
    process.stderr.write(`ronda: ${loaded.message}\n${SERVER_USAGE_HINT}\n`);
    process.exit(2);
  }
  if (loaded.config.help) {
    process.stdout.write(`${SERVER_USAGE}\n`);
    return;
  }
  if (loaded.config.version) {
    process.stdout.write(`${packageVersion()}\n`);
    return;
  }
  const logger = new Logger({ quiet: loaded.config.quiet });
  const primary = new Primary(loaded.config, logger, WORKER_SCRIPT);

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn('primary', `${signal} again: forcing shutdown`);
      primary.forceClose();
      process.exit(1);
    }
    logger.info('primary', `${signal}: shutting down (again to force)`);
    primary.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error('primary', `shutdown failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await primary.start();
  } catch (error) {
    logger.error('primary', `could not start: ${error instanceof Error ? error.message : String(error)}`);
    primary.forceClose();
    process.exit(1);
  }
}

void main();
