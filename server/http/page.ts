/**
 * The console page's files, built into dist/client/web/ by `npm run build` (the page's own
 * TypeScript, its HTML and CSS, and uPlot's files copied from node_modules): read once at start
 * and served from memory, with an ETag, so the page works offline and loads in one round trip
 * per file.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const PAGE_DIR = path.join(__dirname, '..', '..', 'client', 'web');

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

export interface PageFile {
  body: Buffer;
  type: string;
  etag: string;
}

/** The page's files by URL path (`/`, `/app.js`, ...); empty if the page was not built. */
export function loadPage(dir = PAGE_DIR): Map<string, PageFile> {
  const files = new Map<string, PageFile>();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return files;
  }
  for (const name of names) {
    const type = TYPES[path.extname(name)];
    if (type === undefined) continue;
    const body = readFileSync(path.join(dir, name));
    const etag = `"${createHash('sha1').update(body).digest('base64url').slice(0, 16)}"`;
    files.set(name === 'index.html' ? '/' : `/${name}`, { body, type, etag });
  }
  return files;
}
