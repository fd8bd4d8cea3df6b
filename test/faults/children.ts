// The fault suite's child processes (CLI workers and servers, redis-server): each one tracked by pid
// and ended by pid — by the file's afterAll, by a test's finally, or when the test process exits.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../bin/dispersal.js", import.meta.url));
const OUTPUT_LIMIT = 256 * 1024;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Child {
  name: string;
  pid: number;
  process: ChildProcess;
  exited: Promise<Exit>;
  alive(): boolean;
  /** The last 256 KB of stdout and stderr together. */
  output(): string;
  /** Sends the signal to this pid (if still running) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
}

const everyChild = new Set<Child>();
let exitHooked = false;

function hookProcessExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // Last resort if the test process is torn down without afterAll: no orphaned workers or Redis servers.
  process.once("exit", () => {
    for (const child of everyChild) if (child.alive()) try { process.kill(child.pid, "SIGKILL"); } catch { /* already gone */ }
  });
}

export class ChildGroup {
  private readonly children = new Set<Child>();

  /** `node bin/dispersal.js <args>` with only the given environment (plus PATH and HOME). */
  cli(name: string, args: string[], env: Record<string, string>): Child {
    return this.spawn(name, process.execPath, [CLI, ...args], { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", ...env });
  }

  /** `as`: the user to run it as (Postgres refuses to run as root). */
  spawn(name: string, command: string, args: string[], env: Record<string, string> = { PATH: process.env.PATH ?? "" }, cwd?: string, as?: { uid: number; gid: number }): Child {
    hookProcessExit();
    const proc = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"], ...(as ?? {}) });
    if (proc.pid === undefined) throw new Error(`could not start ${name} (${command})`);
    let output = "";
    const append = (d: Buffer) => {
      output += d.toString();
      if (output.length > OUTPUT_LIMIT) output = output.slice(-OUTPUT_LIMIT);
    };
    proc.stdout!.on("data", append);
    proc.stderr!.on("data", append);
    const exited = new Promise<Exit>((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
    const child: Child = {
      name,
      pid: proc.pid,
      process: proc,
      exited,
      alive: () => proc.exitCode === null && proc.signalCode === null,
      output: () => output,
      kill: async (signal = "SIGKILL") => {
        if (child.alive()) {
          try {
            process.kill(proc.pid!, signal);
          } catch {
            /* exited in between */
          }
        }
        return exited;
      },
    };
    this.children.add(child);
    everyChild.add(child);
    void exited.then(() => everyChild.delete(child));
    return child;
  }

  all(): Child[] {
    return [...this.children];
  }

  live(): Child[] {
    return [...this.children].filter((c) => c.alive());
  }

  /** SIGKILL every child of this group still running, by pid, and wait until each has exited. */
  async killAll(): Promise<void> {
    await Promise.all([...this.children].map((c) => c.kill("SIGKILL")));
    this.children.clear();
  }
}

/**
 * How the children that are no longer running ended, with the tail of each one's output: the message
 * of an expectation that they all stay up, so a failure in CI says why a process died.
 */
export function whyExited(children: Child[]): string {
  const dead = children.filter((c) => !c.alive());
  if (dead.length === 0) return "every child is running";
  return dead
    .map((c) => `--- ${c.name} (pid ${c.pid}) exited: code ${c.process.exitCode}, signal ${c.process.signalCode}\n${c.output().slice(-4000)}`)
    .join("\n");
}

export async function waitFor<T>(probe: () => Promise<T | undefined | false | null>, options: { timeoutMs: number; what: string; everyMs?: number }): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false && value !== null) return value as T;
    if (Date.now() > deadline) throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}`);
    await sleep(options.everyMs ?? 200);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
