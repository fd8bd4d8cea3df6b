// Reads one sample out of a Prometheus text exposition (what /metrics answers), for the metrics tests.

/** The value of one sample whose labels are exactly `labels`; NaN when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const pairs = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    const wanted = Object.entries(labels);
    if (wanted.length === Object.keys(pairs).length && wanted.every(([k, v]) => pairs[k] === v)) return Number(match[3]);
  }
  return Number.NaN;
}
