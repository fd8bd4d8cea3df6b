// The verified-credential cache of requireCredentials (src/dashboard/auth.ts): a repeated request
// of one client is believed without verifying it or asking the sign-in throttle again, for a short
// time and a bounded number of entries; a wrong secret is refused whatever is held; an address that
// just failed or was throttled is checked again, so a right guess from it still meets the throttle.
import type { Server } from "node:http";
import express from "express";
import { afterEach, describe, expect, it } from "vitest";
import type { OpsUser } from "../../src/config.js";
import { requireCredentials, VerifiedCredentials } from "../../src/dashboard/auth.js";
import type { SignInThrottle } from "../../src/dashboard/signInThrottle.js";

const USERS: OpsUser[] = [
  { name: "olga", role: "operator", secret: "olga-operator-secret" },
  { name: "victor", role: "viewer", secret: "victor-viewer-secret" },
];
const header = (name: string, secret: string) => `Basic ${Buffer.from(`${name}:${secret}`).toString("base64")}`;

/** A throttle that counts what it is asked, and throttles the addresses a test says. */
function countingThrottle() {
  const throttled = new Set<string>();
  const calls = { waitBeforeTrying: 0, recordFailure: 0 };
  const throttle: SignInThrottle = {
    async waitBeforeTrying(address) {
      calls.waitBeforeTrying++;
      return throttled.has(address) ? 60_000 : undefined;
    },
    async recordFailure() {
      calls.recordFailure++;
      return undefined;
    },
  };
  return { throttle, throttled, calls };
}

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function serve(throttle: SignInThrottle, verified: VerifiedCredentials): Promise<(authorization: string, address?: string) => Promise<{ status: number; who?: string }>> {
  const app = express();
  app.set("trust proxy", "loopback");
  app.use(requireCredentials(USERS, throttle, verified));
  app.get("/", (_req, res) => void res.json({ who: (res.locals.operator as { name: string }).name }));
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  const port = (server.address() as { port: number }).port;
  return async (authorization, address = "10.0.0.1") => {
    const answer = await fetch(`http://127.0.0.1:${port}/`, { headers: { authorization, "x-forwarded-for": address } });
    const body = (await answer.json()) as { who?: string };
    return { status: answer.status, ...(body.who ? { who: body.who } : {}) };
  };
}

describe("verified credentials", () => {
  it("believes a repeated request of one client without asking the throttle again, and refuses a wrong secret whatever is held", async () => {
    const { throttle, calls } = countingThrottle();
    const get = await serve(throttle, new VerifiedCredentials());
    for (let i = 0; i < 20; i++) expect(await get(header("olga", "olga-operator-secret"))).toEqual({ status: 200, who: "olga" });
    expect(calls.waitBeforeTrying).toBe(1);
    expect(await get(header("olga", "olga-operator-secret-but-longer"))).toEqual({ status: 401 });
    expect(await get(header("olga", "olga-operator-secre"))).toEqual({ status: 401 });
    expect(await get(header("victor", "olga-operator-secret"))).toEqual({ status: 401 });
    expect(calls.recordFailure).toBe(3);
    // The same credential from another address is verified there: it is a different client.
    expect(await get(header("olga", "olga-operator-secret"), "10.0.0.2")).toEqual({ status: 200, who: "olga" });
    expect(calls.waitBeforeTrying).toBe(5);
  });

  it("checks again an address that just failed or was throttled: the right secret from it still gets 429", async () => {
    const { throttle, throttled, calls } = countingThrottle();
    const get = await serve(throttle, new VerifiedCredentials());
    const right = header("olga", "olga-operator-secret");
    expect((await get(right)).status).toBe(200);
    throttled.add("10.0.0.1"); // e.g. another process counted this address's guesses
    expect(await get(header("olga", "a-guess-of-twelve"))).toEqual({ status: 429 });
    expect(await get(right)).toEqual({ status: 429 });
    expect(calls.waitBeforeTrying).toBe(3);
    throttled.delete("10.0.0.1");
    // Not believed from the cache while the address is marked: verified again, through the throttle.
    expect(await get(right)).toEqual({ status: 200, who: "olga" });
    expect(calls.waitBeforeTrying).toBe(4);
  });

  it("expires an entry its TTL after it was verified, however often it is used, and holds at most maxEntries (least recently used out)", () => {
    let now = 1_000_000;
    const verified = new VerifiedCredentials({ ttlMs: 30_000, maxEntries: 2, now: () => now });
    const olga = { name: "olga", role: "operator" as const };
    verified.remember("a", "h1", olga);
    for (let t = 0; t < 29; t++) {
      now += 1000;
      expect(verified.lookup("a", "h1")).toEqual(olga);
    }
    now += 1000;
    expect(verified.lookup("a", "h1")).toBeUndefined(); // 30 s after verification, used every second
    verified.remember("a", "h1", olga);
    verified.remember("a", "h2", olga);
    expect(verified.lookup("a", "h1")).toEqual(olga); // h1 now the most recently used
    verified.remember("a", "h3", olga);
    expect(verified.size).toBe(2);
    expect(verified.lookup("a", "h2")).toBeUndefined();
    expect(verified.lookup("a", "h1")).toEqual(olga);
    expect(verified.lookup("b", "h1")).toBeUndefined(); // keyed by address and header together
    verified.failed("a", 5000);
    expect(verified.lookup("a", "h1")).toBeUndefined(); // marked for at least the TTL
    now += 10_000;
    verified.remember("a", "h3", olga); // verified again meanwhile: still not answered from memory
    expect(verified.lookup("a", "h3")).toBeUndefined();
    now += 19_999;
    expect(verified.lookup("a", "h3")).toBeUndefined();
    now += 1;
    expect(verified.lookup("a", "h3")).toEqual(olga);
  });
});
