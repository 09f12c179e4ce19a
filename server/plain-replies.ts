/**
 * A plain-text client's replies (the seed's protocol: a line in, a line out), in the order of its
 * lines. Tasks settle in any order; a reply is written only once every reply before it has been,
 * so the client reads the answer to its n-th line as its n-th line.
 */
export class PlainReplies {
  /** Replies owed, oldest first; `text` is undefined until its task settles. */
  private readonly queue: { text: string | undefined }[] = [];
  private readonly byTask = new Map<string, { text: string | undefined }>();

  /** A reply known at once (an error); returns what can be written now, in order. */
  answer(text: string): string {
    this.queue.push({ text });
    return this.take();
  }

  /** A reply that the task `taskId` will give. */
  expect(taskId: string): void {
    const entry = { text: undefined };
    this.queue.push(entry);
    this.byTask.set(taskId, entry);
  }

  /**
   * The task settled with `text`; returns what can be written now, in order, or undefined when the
   * task is not one of these (a JSON request's).
   */
  settle(taskId: string, text: () => string): string | undefined {
    const entry = this.byTask.get(taskId);
    if (entry === undefined) return undefined;
    this.byTask.delete(taskId);
    entry.text = text();
    return this.take();
  }

  private take(): string {
    let text = '';
    while (this.queue.length > 0 && this.queue[0]?.text !== undefined) {
      text += `${(this.queue.shift() as { text: string }).text}\n`;
    }
    return text;
  }
}
