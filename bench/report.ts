/**
 * The benchmark's figures: medians with min and max over the runs, the targets of issue 5 they
 * are held against, and the table a person reads (the JSON object is the same data).
 */
import type { Column, Output } from '../client/output';

export interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export function spread(values: readonly number[]): Spread | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median =
    sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number, runs: [...values] };
}

/** One line of the table: a figure, its spread, and the target it is held against, if any. */
export interface Figure {
  key: string;
  label: string;
  /** `x`: a ratio of two figures. */
  unit: 'tasks/s' | 'ms' | 'MB' | 'tasks' | '%' | 'x';
  value: Spread | undefined;
  /** `min`: the median must reach it; `max`: the median must stay below it. */
  target?: { bound: 'min' | 'max'; value: number };
}

export function targetMet(figure: Figure): boolean | undefined {
  if (figure.target === undefined || figure.value === undefined) return undefined;
  return figure.target.bound === 'min'
    ? figure.value.median >= figure.target.value
    : figure.value.median < figure.target.value;
}

function format(value: number, unit: Figure['unit']): string {
  if (unit === 'ms') return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : Math.round(value).toLocaleString('en-US');
  if (unit === 'MB') return value.toFixed(1);
  if (unit === '%') return value.toFixed(1);
  if (unit === 'x') return value.toFixed(2);
  return Math.round(value).toLocaleString('en-US');
}

export function printFigures(output: Output, figures: readonly Figure[], runs: number): void {
  const columns: Column<Figure>[] = [
    { header: `figure (median of ${runs})`, value: (figure) => `${figure.label} (${figure.unit})` },
    { header: 'median', align: 'right', value: (figure) => (figure.value === undefined ? '-' : format(figure.value.median, figure.unit)) },
    { header: 'min', align: 'right', value: (figure) => (figure.value === undefined ? '-' : format(figure.value.min, figure.unit)) },
    { header: 'max', align: 'right', value: (figure) => (figure.value === undefined ? '-' : format(figure.value.max, figure.unit)) },
    {
      header: 'target',
      align: 'right',
      value: (figure) =>
        figure.target === undefined
          ? ''
          : `${figure.target.bound === 'min' ? '>=' : '<'} ${format(figure.target.value, figure.unit)}`,
    },
    {
      header: 'met',
      value: (figure) => {
        const met = targetMet(figure);
        if (met === undefined) return '';
        return met ? output.chalk.green('yes') : output.chalk.red('NO');
      },
    },
  ];
  output.table(figures, columns);
}

/** Median CPU use per process in each phase, as percent of one core. */
export type CpuByPhase = Record<string, Record<string, number>>;

export function printCpu(output: Output, cpu: CpuByPhase): void {
  const phases = Object.keys(cpu);
  if (phases.length === 0) return;
  const names = [...new Set(phases.flatMap((phase) => Object.keys(cpu[phase] ?? {})))];
  const columns: Column<string>[] = [
    { header: 'CPU % of one core (median)', value: (phase) => phase },
    ...names.map((name) => ({
      header: name,
      align: 'right' as const,
      value: (phase: string) => {
        const value = cpu[phase]?.[name];
        return value === undefined ? '-' : String(value);
      },
    })),
  ];
  output.table(phases, columns);
}
