// Failpoints: named await boundaries where money or queue state changes, at which a test can make the
// process die or throw ("a crash at every step"). Inert unless armed: by DISPERSAL_FAILPOINTS in a
// child process's environment (test-only, see README), or by armFailpoint() inside a test process.
//   DISPERSAL_FAILPOINTS="retrigger.after-commit=kill,escalate.before-commit=throw"

export type FailpointAction = "kill" | "throw";

export class FailpointError extends Error {
  readonly code = "FAILPOINT";
  constructor(readonly failpoint: string) {
    super(`failpoint ${failpoint} fired`);
    this.name = "FailpointError";
  }
}

const armed = new Map<string, FailpointAction>(parseSpec(process.env.DISPERSAL_FAILPOINTS ?? ""));

function parseSpec(spec: string): [string, FailpointAction][] {
  return spec
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const [name, action = "kill"] = entry.split("=");
      if (action !== "kill" && action !== "throw") throw new Error(`DISPERSAL_FAILPOINTS: unknown action "${action}" for ${name}`);
      return [name!, action];
    });
}

/** Arms (or with undefined, disarms) a failpoint in this process. For tests only. */
export function armFailpoint(name: string, action: FailpointAction | undefined): void {
  if (action) armed.set(name, action);
  else armed.delete(name);
}

/** A named step. Does nothing unless a test armed it; then kills this process or throws. */
export function failpoint(name: string): void {
  if (armed.size === 0) return;
  const action = armed.get(name);
  if (!action) return;
  if (action === "kill") {
    process.kill(process.pid, "SIGKILL");
  }
  throw new FailpointError(name);
}
