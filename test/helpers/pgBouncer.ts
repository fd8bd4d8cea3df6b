// A PgBouncer of a test's own in transaction mode, in front of the shared Postgres, on a free
// loopback port with its config in a temp directory; installed (Debian's package) when missing.
import { execFileSync, execSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll } from "vitest";
import { TEST_ADMIN_URL } from "./env.js";
import { waitFor } from "./processes.js";
import { freePort } from "./redisServer.js";

export interface PgBouncer {
  port: number;
  /** `directUrl` with its host and port replaced by PgBouncer's. */
  urlFor(directUrl: string): string;
  /** A query on PgBouncer's admin console (SHOW CLIENTS, SHOW STATS …), as rows of text. */
  admin(command: string): Promise<Record<string, unknown>[]>;
  log(): string;
  stop(): Promise<void>;
}

function ensureInstalled(): void {
  try {
    execSync("command -v pgbouncer", { stdio: "ignore", shell: "/bin/sh" });
  } catch {
    execSync("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer", { stdio: "inherit", shell: "/bin/sh" });
  }
}

/** Registered at collection time: afterAll ends it by its pid and removes its directory. */
export async function startPgBouncer(options: { poolSize?: number } = {}): Promise<PgBouncer> {
  ensureInstalled();
  const binary = execSync("command -v pgbouncer", { shell: "/bin/sh" }).toString().trim();
  const upstream = new URL(TEST_ADMIN_URL);
  const user = decodeURIComponent(upstream.username || "postgres");
  const dir = mkdtempSync(join(tmpdir(), "pgbouncer-"));
  const port = await freePort();
  const ini = join(dir, "pgbouncer.ini");
  writeFileSync(join(dir, "users.txt"), `"${user}" ""\n`);
  writeFileSync(
    ini,
    [
      "[databases]",
      `* = host=${upstream.hostname} port=${upstream.port || 5432}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${join(dir, "users.txt")}`,
      "pool_mode = transaction",
      // Far fewer server sessions than clients: transactions of different clients share them.
      `default_pool_size = ${options.poolSize ?? 4}`,
      "max_client_conn = 500",
      `admin_users = ${user}`,
      `logfile = ${join(dir, "pgbouncer.log")}`,
      "",
    ].join("\n"),
  );
  // PgBouncer refuses to run as root: it drops to the postgres user, which must read its directory.
  const asRoot = userInfo().uid === 0;
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"]).toString().trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"]).toString().trim());
    chmodSync(dir, 0o755);
    for (const path of [dir, ini, join(dir, "users.txt")]) chownSync(path, uid, gid);
  }
  const child: ChildProcess = spawn(binary, [...(asRoot ? ["-u", "postgres"] : []), ini], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const log = () => {
    try {
      return output + readFileSync(join(dir, "pgbouncer.log"), "utf8");
    } catch {
      return output;
    }
  };
  const adminUrl = `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/pgbouncer`;
  const admin = async (command: string) => {
    // The admin console speaks the simple query protocol only.
    const sql = postgres(adminUrl, { max: 1, fetch_types: false, onnotice: () => {}, connect_timeout: 5 });
    try {
      return [...(await sql.unsafe(command).simple())] as Record<string, unknown>[];
    } finally {
      await sql.end({ timeout: 1 });
    }
  };
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    })());
  afterAll(stop);

  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`pgbouncer exited at start: ${log()}`);
      return admin("SHOW VERSION").then(() => true, () => false);
    },
    { timeoutMs: 15_000, what: "pgbouncer answering", everyMs: 100 },
  );
  return {
    port,
    urlFor: (directUrl) => {
      const url = new URL(directUrl);
      url.hostname = "127.0.0.1";
      url.port = String(port);
      return url.toString();
    },
    admin,
    log,
    stop,
  };
}
