/**
 * Puts the console page's static files beside its compiled script in dist/client/web/: its HTML
 * and CSS, and uPlot's script and styles from node_modules (served by the primary, so the page
 * needs no CDN and works offline). Run by `npm run build` after tsc.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const SOURCE = path.join(__dirname, '..', '..', 'client', 'web');
const TARGET = path.join(__dirname, 'web');
const UPLOT = path.join(path.dirname(require.resolve('uplot/package.json')), 'dist');

mkdirSync(TARGET, { recursive: true });
for (const name of ['index.html', 'style.css']) copyFileSync(path.join(SOURCE, name), path.join(TARGET, name));
for (const name of ['uPlot.iife.min.js', 'uPlot.min.css']) copyFileSync(path.join(UPLOT, name), path.join(TARGET, name));
