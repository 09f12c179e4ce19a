/**
 * `ronda submit`: runs the tasks given as arguments, or one task per line of standard input,
 * pipelined on one connection, and prints each result in input order. Exit code 0 only if every
 * task succeeded.
 */
import readline from 'node:readline';
import { RondaError } from '../shared/errors';
import { CONNECTION_HELP, SubmitCommandSchema } from './cli-options';
import { EXIT_FAILED, EXIT_OK, readCommandLine, usageError, withConnection } from './command-helpers';
import type { RondaConnection, TaskReply } from './ronda-connection';
import { taskPayload } from './console-line';
import { describeTask, formatNoReply, formatReply } from './format';
import { describeLostConnection } from './open-connection';
import { runOrdered } from './ordered-pipeline';
import type { Output } from './output';

/** Tasks in flight at once; the server takes up to 4,096 per connection before pushing back. */
export const SUBMIT_WINDOW = 1024;
/** How long a run goes before its progress bar appears, so that short runs print no bar. */
const PROGRESS_AFTER_MS = 300;

export const SUBMIT_USAGE = `Usage: ronda submit [options] <task...>
       ronda submit [options] -        (or a pipe: one task per line of standard input)

Runs each task, prints each result in input order; exit code 0 only if all succeeded.

Options:
  --kind <kind>     task kind for every task (text); sleep and fib take a number:
                    ronda submit --kind fib 30 31    ronda submit --kind sleep 500
                    other kinds take JSON: ronda submit --kind sleep '{"ms":500}'
  --timeout-ms <n>  time limit per task
  --retries <n>     run a task again after it fails (HANDLER_FAILED, TIMEOUT), n times at most
  --json            print the server's reply objects, one per line
${CONNECTION_HELP}`;

interface TaskLine {
  /** 1-based argument or line number; also the task's id on the wire. */
  number: number;
  text: string;
}

type Answer =
  | { task: TaskLine; reply: TaskReply }
  | { task: TaskLine; refused: RondaError }
  | { task: TaskLine; lost: Error };

export async function submitCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(SubmitCommandSchema, argv, output, { command: 'submit', usage: SUBMIT_USAGE, positionals: true });
  if (typeof commandLine === 'number') return commandLine;
  const { options, positionals } = commandLine;
  const fromStdin =
    (positionals.length === 1 && positionals[0] === '-') || (positionals.length === 0 && process.stdin.isTTY !== true);
  if (positionals.length === 0 && !fromStdin) {
    return usageError(output, 'submit', 'no tasks given: name them (ronda submit tarea1 tarea2) or pipe them in, one per line');
  }
  if (!fromStdin && positionals.includes('-')) {
    return usageError(output, 'submit', '"-" (read standard input) cannot be mixed with tasks given as arguments');
  }

  return withConnection(options, output, async (connection, { hello }) => {
    if (!hello.kinds.includes(options.kind)) {
      output.error(`ronda: the server has no task kind "${options.kind}" (it knows: ${hello.kinds.join(', ')})`);
      return EXIT_FAILED;
    }
    const tasks = fromStdin ? stdinTasks() : positionals.map((text, index) => ({ number: index + 1, text }));
    const run = new SubmitRun(connection, output, options);
    const count = await runOrdered(tasks, {
      window: SUBMIT_WINDOW,
      stop: () => run.lost !== undefined,
      start: (task) => run.start(task),
      emit: (outcome) => run.emit(outcome),
    });
    output.clearProgress();
    if (run.lost !== undefined) {
      output.error(
        `ronda: lost the connection to the server after ${run.answered} of ${count} replies: ` +
          describeLostConnection(run.lost),
      );
      return EXIT_FAILED;
    }
    return run.failed === 0 ? EXIT_OK : EXIT_FAILED;
  });
}

/** Non-blank lines of standard input, numbered as they are in the input. */
async function* stdinTasks(): AsyncGenerator<TaskLine> {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let number = 0;
  for await (const line of lines) {
    number += 1;
    if (line.trim() !== '') yield { number, text: line };
  }
}

class SubmitRun {
  answered = 0;
  failed = 0;
  lost: Error | undefined;
  private started = 0;
  private readonly startedAt = Date.now();

  constructor(
    private readonly connection: RondaConnection,
    private readonly output: Output,
    private readonly options: { kind: string; json: boolean; timeoutMs?: number | undefined; retries?: number | undefined },
  ) {}

  start(task: TaskLine): Promise<Answer> {
    this.started += 1;
    const payload = taskPayload(this.options.kind, task.text);
    const { timeoutMs, retries } = this.options;
    const submitOptions = {
      id: String(task.number),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      ...(retries === undefined ? {} : { retries }),
    };
    return this.connection.submit(this.options.kind, payload, submitOptions).then(
      (reply): Answer => ({ task, reply }),
      (error: unknown): Answer => {
        // A refusal with this task's id arrives on an open connection; anything else means it is gone.
        if (error instanceof RondaError && !this.connection.closed) return { task, refused: error };
        return { task, lost: error instanceof Error ? error : new Error(String(error)) };
      },
    );
  }

  emit(outcome: Answer): void {
    if ('lost' in outcome) {
      this.lost ??= outcome.lost;
      return;
    }
    const { output } = this;
    const label = describeTask(this.options.kind, taskPayload(this.options.kind, outcome.task.text));
    this.answered += 1;
    if ('reply' in outcome) {
      if (outcome.reply.type !== 'done') this.failed += 1;
      output.line(this.options.json ? JSON.stringify(outcome.reply) : formatReply(output.chalk, label, outcome.reply));
    } else {
      this.failed += 1;
      const { code, message } = outcome.refused;
      output.line(
        this.options.json
          ? JSON.stringify({ type: 'error', code, message, id: String(outcome.task.number) })
          : formatNoReply(output.chalk, label, `refused ${code}: ${message}`),
      );
    }
    this.drawProgress();
  }

  /** Redrawn under every result line once the run has gone on for a moment; never when piped. */
  private drawProgress(): void {
    if (!this.output.interactive || Date.now() - this.startedAt < PROGRESS_AFTER_MS) return;
    this.output.progress(this.answered, this.started, 'replies');
  }
}
