// A loopback TCP proxy put between the workers and Postgres, so the suite can cut every connection,
// refuse new ones (nothing listening), or accept and reset them, for as long as a test wants.
import { createConnection, createServer, type Server, type Socket } from "node:net";

export type ProxyMode = "forward" | "reset";

export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private mode: ProxyMode = "forward";
  connectionsSeen = 0;

  private constructor(private readonly target: { host: string; port: number }) {}

  private listeningPort = 0;

  get port(): number {
    return this.listeningPort;
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    await proxy.listen(0);
    return proxy;
  }

  private listen(port: number): Promise<void> {
    const server = createServer((client) => this.accept(client));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        server.off("error", reject);
        const address = server.address();
        this.listeningPort = typeof address === "object" && address ? address.port : port;
        resolve();
      });
    });
  }

  private accept(client: Socket): void {
    this.connectionsSeen++;
    if (this.mode === "reset") {
      client.resetAndDestroy();
      return;
    }
    const upstream = createConnection(this.target);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** Resets every open connection through the proxy (both sides). */
  cutAll(): number {
    const n = this.sockets.size / 2;
    for (const socket of this.sockets) socket.resetAndDestroy();
    this.sockets.clear();
    return n;
  }

  /** Postgres "down": open connections cut, and nothing listens (new connections are refused). */
  async refuse(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    this.cutAll();
    await closed;
  }

  /** Postgres "flapping": open connections cut, new ones accepted and reset at once. */
  resetNewConnections(): void {
    this.mode = "reset";
    this.cutAll();
  }

  async restore(): Promise<void> {
    this.mode = "forward";
    if (!this.server) await this.listen(this.port);
  }

  async close(): Promise<void> {
    await this.refuse();
  }
}
