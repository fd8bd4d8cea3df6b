// Postgres servers of the fault suite's own: a pg_auto_failover formation (a monitor, a primary and
// its synchronous standby) on free loopback ports, in a temp dir, as the postgres user, ended by pid.
// The shared cluster on 5432 is never touched.
import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { type Child, type ChildGroup, sleep, waitFor } from "./children.js";
import { ephemeralPort, makeTempDir } from "./redisServers.js";

/** The newest Postgres installed the Debian way (/usr/lib/postgresql/<major>). */
function postgresMajor(): string {
  const majors = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql").filter((v) => /^\d+$/.test(v)) : [];
  if (majors.length === 0) throw new Error("no Postgres server under /usr/lib/postgresql (apt-get install postgresql)");
  return majors.sort((a, b) => Number(b) - Number(a))[0]!;
}

function onPath(command: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Installs Debian's pg_auto_failover (the CLI and the monitor's extension) when missing; root only. */
export function ensurePgAutoFailover(): void {
  const major = postgresMajor();
  const extension = `/usr/share/postgresql/${major}/extension/pgautofailover.control`;
  if (onPath("pg_autoctl") && existsSync(extension)) return;
  if (process.getuid?.() !== 0) throw new Error(`pg_auto_failover is missing: apt-get install pg-auto-failover-cli postgresql-${major}-auto-failover`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "ignore", env });
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "pg-auto-failover-cli", `postgresql-${major}-auto-failover`], { stdio: "ignore", env });
}

/** Who runs the servers: postgres when we are root (Postgres refuses root), else ourselves. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const [uid, gid] = ["-u", "-g"].map((flag) => Number(execFileSync("id", [flag, "postgres"]).toString().trim()));
  return { uid: uid!, gid: gid! };
}

export interface PostgresNode {
  name: string;
  port: number;
  pgdata: string;
  /** `pg_autoctl create postgres … --run`: the keeper; the postmaster runs under it. */
  child: Child;
}

export interface NodeState {
  name: string;
  port: number;
  reported: string;
  goal: string;
}

export interface FailoverFormation {
  monitorPort: number;
  nodes: PostgresNode[];
  /** Both nodes, read-write only: the URL the service is given. The standby is listed first on purpose. */
  url(database: string): string;
  /** One node alone (to read what is on it, whatever its role). */
  nodeUrl(node: PostgresNode, database: string): string;
  /** The nodes as the monitor sees them. */
  states(): Promise<NodeState[]>;
  /** The node that takes writes (reported and assigned primary or wait_primary), if any. */
  writable(): Promise<PostgresNode | undefined>;
  /** SIGKILL of the node's keeper, its postmaster and every backend: a machine gone. The pids killed. */
  crash(node: PostgresNode): Promise<number[]>;
  stop(): Promise<void>;
}

const WRITABLE = new Set(["primary", "wait_primary", "single"]);

interface ProcessId {
  pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22): tells a reused pid from ours. */
  start: string;
}

function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined; // exited while we read
  }
}

/** Every live process under `root` (root included), from /proc, each with its start time. */
function processTree(root: number): ProcessId[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(statFields(Number(entry))?.[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const tree: ProcessId[] = [];
  const visit = (pid: number) => {
    const start = statFields(pid)?.[19];
    if (start === undefined) return;
    tree.push({ pid, start });
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return tree;
}

/** Signals each process of a snapshot that is still the same process (pid and start time). */
function signalAll(processes: readonly ProcessId[], signal: NodeJS.Signals): void {
  for (const { pid, start } of processes) {
    if (statFields(pid)?.[19] !== start) continue;
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * A monitor, then node1 (primary) and node2 (its synchronous standby: a commit is acknowledged once
 * the standby has it), each `pg_autoctl … --run` as a child. The monitor's health checks are tuned
 * down from their defaults (unhealthy after 20 s, demote timeout 30 s) so a failover takes seconds.
 */
export async function startFailoverFormation(children: ChildGroup, options: { database: string }): Promise<FailoverFormation> {
  const major = postgresMajor();
  const temp = makeTempDir("pgaf");
  const as = serverUser();
  if (as) chownSync(temp.dir, as.uid, as.gid);
  for (const sub of ["config", "data", "run"]) {
    mkdirSync(join(temp.dir, sub), { mode: 0o700 });
    if (as) chownSync(join(temp.dir, sub), as.uid, as.gid);
  }
  const env = {
    PATH: `/usr/lib/postgresql/${major}/bin:${process.env.PATH ?? ""}`,
    HOME: temp.dir,
    XDG_CONFIG_HOME: join(temp.dir, "config"),
    XDG_DATA_HOME: join(temp.dir, "data"),
    XDG_RUNTIME_DIR: join(temp.dir, "run"),
  };
  const common = ["--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl", "--run"];
  const autoctl = (name: string, args: string[]) => children.spawn(name, "pg_autoctl", args, env, temp.dir, as);
  const keepers: Child[] = [];
  const nodes: PostgresNode[] = [];
  const crashed = new Set<PostgresNode>();

  const monitorPort = await ephemeralPort();
  const monitorUrl = `postgres://postgres@127.0.0.1:${monitorPort}/pg_auto_failover?sslmode=disable`;
  const onMonitor = async <T>(work: (sql: postgres.Sql) => Promise<T>): Promise<T> => {
    const sql = postgres(monitorUrl, { max: 1, onnotice: () => {}, connect_timeout: 3 });
    try {
      return await work(sql);
    } finally {
      await sql.end({ timeout: 1 });
    }
  };
  const states = () =>
    onMonitor(async (sql) =>
      (await sql<{ nodename: string; nodeport: number; reportedstate: string; goalstate: string }[]>`
        select nodename, nodeport, reportedstate::text, goalstate::text from pgautofailover.node order by nodeid`).map((r) => ({
        name: r.nodename,
        port: r.nodeport,
        reported: r.reportedstate,
        goal: r.goalstate,
      })),
    );
  const alive = (child: Child, what: string) => {
    if (!child.alive()) throw new Error(`${what} exited: ${child.output().slice(-3000)}`);
  };

  let stopping: Promise<void> | undefined;
  const stopOnce = async () => {
    for (const keeper of [...keepers].reverse()) {
      if (!keeper.alive()) continue;
      // pg_autoctl stops its Postgres (pg_ctl stop --mode fast) on SIGTERM; whatever is left after 10 s is killed.
      const tree = processTree(keeper.pid);
      await Promise.race([keeper.kill("SIGTERM"), sleep(10_000)]);
      signalAll(tree, "SIGKILL");
    }
    for (const node of crashed) removeSharedMemory(node.pgdata);
    temp.remove();
  };
  const stop = () => (stopping ??= stopOnce());

  try {
    const monitor = autoctl("pg_autoctl-monitor", ["create", "monitor", "--pgdata", join(temp.dir, "monitor"), "--pgport", String(monitorPort), ...common]);
    keepers.push(monitor);
    await waitFor(
      async () => {
        alive(monitor, "the pg_auto_failover monitor");
        return onMonitor(async (sql) => (await sql`select 1 from pg_extension where extname = 'pgautofailover'`).length === 1).catch(() => false);
      },
      { timeoutMs: 60_000, what: "the pg_auto_failover monitor", everyMs: 300 },
    );
    await onMonitor(async (sql) => {
      for (const [name, value] of Object.entries({
        health_check_period: 1000,
        health_check_timeout: 1000,
        health_check_max_retries: 1,
        health_check_retry_delay: 500,
        node_considered_unhealthy_timeout: 3000,
        primary_demote_timeout: 3000,
      })) {
        await sql.unsafe(`alter system set pgautofailover.${name} = ${value}`);
      }
      await sql`select pg_reload_conf()`;
    });

    for (const name of ["node1", "node2"]) {
      const port = await ephemeralPort();
      const pgdata = join(temp.dir, name);
      const child = autoctl(`pg_autoctl-${name}`, [
        "create", "postgres", "--pgdata", pgdata, "--pgport", String(port), "--name", name, "--dbname", options.database,
        "--monitor", `postgres://autoctl_node@127.0.0.1:${monitorPort}/pg_auto_failover?sslmode=disable`, ...common,
      ]);
      keepers.push(child);
      const node = { name, port, pgdata, child };
      nodes.push(node);
      const wanted = name === "node1" ? ["single"] : ["primary", "secondary"];
      await waitFor(
        async () => {
          alive(child, `pg_autoctl ${name}`);
          const seen = await states().catch(() => []);
          if (name === "node2") {
            // pg_basebackup waits for a spread checkpoint on the primary (minutes by default): ask for it now.
            await onNode(nodes[0]!, "postgres", (sql) => sql`checkpoint`).catch(() => {});
          }
          return seen.length === nodes.length && seen.every((s, i) => s.reported === wanted[i] && s.goal === wanted[i]);
        },
        { timeoutMs: 90_000, what: `pg_auto_failover ${name} ${wanted.join("/")}`, everyMs: 500 },
      );
    }
  } catch (error) {
    await stop();
    throw error;
  }

  const nodeUrl = (node: PostgresNode, database: string) => `postgres://postgres@127.0.0.1:${node.port}/${database}?sslmode=disable`;
  return {
    monitorPort,
    nodes,
    url: (database) => `postgres://postgres@127.0.0.1:${nodes[1]!.port},127.0.0.1:${nodes[0]!.port}/${database}?target_session_attrs=read-write`,
    nodeUrl,
    states,
    writable: async () => {
      const seen = await states();
      const primary = seen.find((s) => WRITABLE.has(s.reported) && s.goal === s.reported);
      return primary ? nodes.find((n) => n.port === primary.port) : undefined;
    },
    crash: async (node) => {
      if (!node.child.alive()) throw new Error(`${node.name} is not running`);
      crashed.add(node);
      const tree = processTree(node.child.pid);
      signalAll(tree, "SIGKILL");
      await node.child.exited;
      return tree.map((p) => p.pid);
    },
    stop,
  };
}

async function onNode<T>(node: PostgresNode, database: string, work: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(`postgres://postgres@127.0.0.1:${node.port}/${database}?sslmode=disable`, { max: 1, onnotice: () => {}, connect_timeout: 3 });
  try {
    return await work(sql);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A SIGKILLed postmaster leaves its System V segment behind (postmaster.pid, line 7: key and id): removed once nobody is attached. */
function removeSharedMemory(pgdata: string): void {
  try {
    const line = readFileSync(join(pgdata, "postmaster.pid"), "utf8").split("\n")[6] ?? "";
    const shmid = line.trim().split(/\s+/)[1];
    if (shmid && /^\d+$/.test(shmid)) execFileSync("ipcrm", ["-m", shmid], { stdio: "ignore" });
  } catch {
    // no pid file, or the segment is gone already
  }
}
