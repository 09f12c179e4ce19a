import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { MAX_LINE_BYTES } from '../shared/protocol';
import { defineKind, type TaskKind } from './task-kind';

export const MAX_SLEEP_MS = 60_000;
/** fib is naive recursion on purpose (it stands for CPU-bound work); fib(40) takes about a second. */
export const MAX_FIB_N = 40;

function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

export const BUILTIN_KINDS: Readonly<Record<string, TaskKind>> = {
  /** The seed's task. */
  text: defineKind(z.string().min(1).max(MAX_LINE_BYTES), (text, { slot }) => {
    return `Task '${text}' processed by worker ${slot}`;
  }),
  hash: defineKind(z.string().max(MAX_LINE_BYTES), (text) => createHash('sha256').update(text).digest('hex')),
  sleep: defineKind(z.strictObject({ ms: z.number().int().min(0).max(MAX_SLEEP_MS) }), async ({ ms }) => {
    await sleep(ms);
    return { sleptMs: ms };
  }),
  fib: defineKind(z.strictObject({ n: z.number().int().min(0).max(MAX_FIB_N) }), ({ n }) => fib(n)),
};
