/**
 * Imported first by main.ts, before the modules that take the primary a few hundred ms to load:
 * from then on SIGHUP (a reload) can no longer end the process with the default action. A SIGHUP
 * before the cluster serves has nothing to reload (the workers being started load the handlers
 * module as it is); main.ts says so, once it can log, and takes the signal over.
 */
export const earlyHangups = { count: 0 };

const onEarlyHangup = (): void => {
  earlyHangups.count += 1;
};

process.on('SIGHUP', onEarlyHangup);

/** main.ts's own SIGHUP handler replaces this one. */
export function releaseEarlyHangups(): void {
  process.off('SIGHUP', onEarlyHangup);
}
