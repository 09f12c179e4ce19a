/**
 * Runs many requests at once but hands their outcomes back in input order: `ronda submit -`
 * pipelines thousands of tasks and still prints line N's result as line N.
 */

export interface OrderedPipelineOptions<In, Out> {
  /** Most inputs started and not yet emitted; bounds memory for an endless stdin. */
  window: number;
  /** Starts one input. Must not reject: turn failures into an `Out`. */
  start: (input: In, index: number) => Promise<Out>;
  /** Receives each outcome, in input order, as soon as it and all before it are in. */
  emit: (output: Out, index: number) => void;
  /** Checked before each input is started; true stops reading more input. */
  stop?: () => boolean;
}

/** Resolves with the number of inputs started, once every one of them has been emitted. */
export async function runOrdered<In, Out>(
  inputs: Iterable<In> | AsyncIterable<In>,
  options: OrderedPipelineOptions<In, Out>,
): Promise<number> {
  const ready = new Map<number, Out>();
  let started = 0;
  let emitted = 0;
  let wake: (() => void) | undefined;

  const flush = (): void => {
    while (ready.has(emitted)) {
      const output = ready.get(emitted) as Out;
      ready.delete(emitted);
      options.emit(output, emitted);
      emitted += 1;
    }
    const waiting = wake;
    wake = undefined;
    waiting?.();
  };
  const waitUntil = async (condition: () => boolean): Promise<void> => {
    while (!condition()) await new Promise<void>((resolve) => (wake = resolve));
  };

  for await (const input of inputs) {
    if (options.stop?.() === true) break;
    const index = started;
    started += 1;
    void options.start(input, index).then((output) => {
      ready.set(index, output);
      flush();
    });
    await waitUntil(() => started - emitted < options.window);
  }
  await waitUntil(() => emitted === started);
  return started;
}
