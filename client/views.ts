/** Tables a person reads, shared by the one-shot commands and the console. */
import type { ResultRow, StatsReply } from '../shared/protocol';
import { resultColumns, statsColumns, statsSummary } from './format';
import type { Output } from './output';

export function showStats(output: Output, stats: StatsReply): void {
  const table = output.tableText(stats.workers, statsColumns(output.chalk));
  output.line(`${table}\n${output.chalk.dim(statsSummary(stats))}`);
}

/** Rows come newest first, as the server and readResults return them. */
export function showResults(output: Output, rows: readonly ResultRow[]): void {
  if (rows.length === 0) {
    output.line(output.chalk.dim('no results stored yet'));
    return;
  }
  output.table(rows, resultColumns(output.chalk));
}
