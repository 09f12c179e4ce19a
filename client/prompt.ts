/**
 * The console's input line. On a terminal it is a readline prompt that results can be printed
 * above without garbling what is being typed (Output calls hide/show around each line); with
 * piped input it just reads lines and shows no prompt.
 */
import readline from 'node:readline';
import type { PromptGuard } from './output';

export interface PromptHandlers {
  line(text: string): void;
  /** Input ended (Ctrl-D, end of a pipe) or Ctrl-C on an empty line: the person is leaving. */
  end(): void;
}

export class Prompt implements PromptGuard {
  readonly terminal: boolean;
  private readonly rl: readline.Interface;
  private closed = false;
  /** close() was called, as opposed to readline closing on Ctrl-D. */
  private closing = false;
  /** Rows the half-typed line spanned when it was hidden, so show() can leave room for them. */
  private hiddenRows = 0;

  constructor(
    private readonly input: NodeJS.ReadStream,
    private readonly output: NodeJS.WriteStream,
    prompt: string,
    private readonly handlers: PromptHandlers,
  ) {
    this.terminal = input.isTTY === true && output.isTTY === true;
    this.rl = readline.createInterface({
      input,
      ...(this.terminal ? { output, prompt, historySize: 500 } : {}),
      terminal: this.terminal,
      crlfDelay: Infinity,
    });
    this.rl.on('line', (text) => {
      this.handlers.line(text);
      if (!this.closed && this.terminal) this.rl.prompt();
    });
    // Only a terminal raises this; with piped input Ctrl-C is the process's SIGINT as usual.
    this.rl.on('SIGINT', () => {
      if (this.rl.line === '') {
        this.close();
        return;
      }
      // Like a shell: drop the half-typed line (end of line, then delete to its start).
      this.rl.write(null, { ctrl: true, name: 'e' });
      this.rl.write(null, { ctrl: true, name: 'u' });
    });
    this.rl.on('close', () => {
      // Ctrl-D leaves the cursor after the prompt; end the line so the shell's prompt starts clean.
      if (this.terminal && !this.closing) this.output.write('\n');
      this.closed = true;
      this.handlers.end();
    });
  }

  start(): void {
    if (this.terminal) this.rl.prompt();
  }

  /** Takes the prompt off the screen and stops reading; `end` is called once. */
  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.hide();
    this.rl.close();
  }

  hide(): void {
    if (!this.terminal || this.closed) return;
    this.hiddenRows = this.rl.getCursorPos().rows;
    readline.moveCursor(this.output, 0, -this.hiddenRows);
    readline.cursorTo(this.output, 0);
    readline.clearScreenDown(this.output);
  }

  show(): void {
    if (!this.terminal || this.closed) return;
    // readline redraws from `hiddenRows` rows above the cursor: give it blank rows to clear, not
    // the lines just printed.
    this.output.write('\n'.repeat(this.hiddenRows));
    this.hiddenRows = 0;
    this.rl.prompt(true);
  }
}
