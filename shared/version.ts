/** The package's version, for `--version` of the client and the server. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const PackageSchema = z.object({ name: z.string(), version: z.string() });

/**
 * The version in Ronda's package.json: the nearest one named "ronda" above `from`. Looked for
 * rather than at a fixed path, because the compiled file (dist/shared/) sits one folder deeper than
 * its source (shared/, which the tests run through ts-node).
 */
export function packageVersion(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const version = readVersion(path.join(dir, 'package.json'));
    if (version !== undefined) return version;
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

function readVersion(file: string): string | undefined {
  try {
    const parsed = PackageSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
    return parsed.success && parsed.data.name === 'ronda' ? parsed.data.version : undefined;
  } catch {
    return undefined; // no package.json here, or not one that can be read: look further up
  }
}
