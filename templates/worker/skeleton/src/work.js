// ${{ values.name }}: ${{ values.description }}

/** One unit of work: what the worker does with each job it takes. */
export function handle(job) {
  return { id: job.id, done: true, by: '${{ values.name }}' };
}

/** Takes jobs from `next()` until `signal` aborts, handing each to `handle`. */
export async function run(next, signal, onDone = () => {}) {
  while (!signal.aborted) {
    const job = await next();
    if (job) {
      onDone(handle(job));
    } else {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}
