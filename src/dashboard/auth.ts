// Who is asking: HTTP Basic credentials checked against OPS_USERS, roles (viewer reads, operator
// acts, service posts payments and nothing else), and failing closed when no user is configured.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { OpsUser } from "../config.js";
import type { SignInThrottle } from "./signInThrottle.js";

export type OpsRole = OpsUser["role"];

export interface Operator {
  name: string;
  role: OpsRole;
}

const REALM = 'Basic realm="dispersal-healing", charset="UTF-8"';

/** Every user is compared, whoever matches, so the time taken says nothing about which part was wrong. */
export function findOperator(users: readonly OpsUser[], name: string, secret: string): Operator | undefined {
  const nameDigest = digest(name);
  const secretDigest = digest(secret);
  let found: Operator | undefined;
  for (const user of users) {
    const nameMatches = timingSafeEqual(nameDigest, digest(user.name));
    const secretMatches = timingSafeEqual(secretDigest, digest(user.secret));
    if (nameMatches && secretMatches && !found) found = { name: user.name, role: user.role };
  }
  return found;
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

function parseBasic(header: string | undefined): { name: string; secret: string } | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { name: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
}

/** How long a verified credential is believed without verifying it again, and how many are held. */
export const VERIFIED_CREDENTIAL_TTL_MS = 30_000;
export const VERIFIED_CREDENTIALS_MAX = 1000;

export interface VerifiedCredentialOptions {
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

/**
 * Credentials this process verified in the last `ttlMs`, keyed by a hash of the client address and
 * the whole Authorization header (never the secret itself): a repeated request of the same client is
 * not verified, nor sent through the sign-in throttle's Redis reads, again. Bounded (least recently
 * used first out) and short-lived (an entry expires `ttlMs` after it was verified, however often it
 * is used). An address that has just failed or been throttled here gets no answer from it until it
 * has stopped failing for `ttlMs`: a correct guess sent from a throttled address is still checked by
 * the throttle, and still refused with 429, even while its real owner's entry is held.
 */
export class VerifiedCredentials {
  private readonly entries = new Map<string, { operator: Operator; until: number }>();
  private readonly failing = new Map<string, number>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: VerifiedCredentialOptions = {}) {
    this.ttlMs = options.ttlMs ?? VERIFIED_CREDENTIAL_TTL_MS;
    this.maxEntries = options.maxEntries ?? VERIFIED_CREDENTIALS_MAX;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  lookup(address: string, header: string): Operator | undefined {
    if (this.ttlMs <= 0) return undefined;
    const now = this.now();
    const failingUntil = this.failing.get(address);
    if (failingUntil !== undefined) {
      if (failingUntil > now) return undefined;
      this.failing.delete(address);
    }
    const key = credentialKey(address, header);
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    if (entry.until <= now) return undefined;
    this.entries.set(key, entry); // most recently used last; the expiry stays the verification's
    return entry.operator;
  }

  remember(address: string, header: string, operator: Operator): void {
    if (this.ttlMs <= 0) return;
    const key = credentialKey(address, header);
    this.entries.delete(key);
    this.entries.set(key, { operator, until: this.now() + this.ttlMs });
    evictOldest(this.entries, this.maxEntries);
  }

  /** A failed or throttled attempt from `address`: nothing cached answers for it for a while. */
  failed(address: string, forMs = 0): void {
    this.failing.delete(address);
    this.failing.set(address, this.now() + Math.max(this.ttlMs, forMs));
    evictOldest(this.failing, this.maxEntries * 10);
  }
}

function credentialKey(address: string, header: string): string {
  return createHash("sha256").update(address, "utf8").update("\n").update(header, "utf8").digest("base64");
}

function evictOldest(map: Map<string, unknown>, max: number): void {
  while (map.size > max) map.delete(map.keys().next().value!);
}

/**
 * Basic auth for everything mounted after it. With no OPS_USERS the surface is closed (503), never
 * open: a forgotten variable must not publish the requeue button to whoever finds the port. With a
 * throttle, failed credentials are counted per client address (req.ip: TRUST_PROXY decides whether
 * X-Forwarded-For is believed) and per user name, and a throttled attempt gets 429 with Retry-After
 * before its credentials are even checked. A credential verified for this client address in the
 * last VERIFIED_CREDENTIAL_TTL_MS is believed without either (VerifiedCredentials): a client that
 * loops on requests costs a hash and a map lookup, not a verification and three Redis reads.
 */
export function requireCredentials(users: readonly OpsUser[], throttle?: SignInThrottle, verified = new VerifiedCredentials()): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    if (users.length === 0) {
      res.status(503).json({ error: "the operations surface is closed: OPS_USERS is not set (name:role:secret,…)" });
      return;
    }
    const header = req.headers.authorization;
    const address = req.ip ?? req.socket.remoteAddress ?? "unknown";
    const known = header ? verified.lookup(address, header) : undefined;
    if (known) {
      res.locals.operator = known;
      return next();
    }
    const credentials = parseBasic(header);
    if (credentials && throttle) {
      const wait = await throttle.waitBeforeTrying(address, credentials.name);
      if (wait !== undefined) {
        verified.failed(address, wait);
        return tooManyFailures(res, wait);
      }
    }
    const operator = credentials && findOperator(users, credentials.name, credentials.secret);
    if (!operator) {
      // A request without credentials is a browser's first try, not a guess: not counted.
      if (credentials) verified.failed(address);
      const wait = credentials && throttle ? await throttle.recordFailure(address, credentials.name) : undefined;
      if (wait !== undefined) {
        verified.failed(address, wait);
        return tooManyFailures(res, wait);
      }
      res.setHeader("WWW-Authenticate", REALM);
      res.status(401).json({ error: credentials ? "wrong user name or secret" : "credentials required (HTTP Basic)" });
      return;
    }
    verified.remember(address, header!, operator);
    res.locals.operator = operator;
    next();
  };
}

function tooManyFailures(res: Response, waitMs: number): void {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  res.setHeader("Retry-After", String(seconds));
  res.status(429).json({ error: `too many failed sign-ins; try again in ${seconds} s` });
}

export function operatorOf(res: Response): Operator {
  const operator = res.locals.operator as Operator | undefined;
  if (!operator) throw new Error("operatorOf called on a route not behind requireCredentials");
  return operator;
}

export function requireOperatorRole(): RequestHandler {
  return (_req, res, next) => {
    if (operatorOf(res).role !== "operator") {
      res.status(403).json({ error: "this needs the operator role; viewers may only read" });
      return;
    }
    next();
  };
}

/** The routes service accounts may call (DESIGN.md §5: a payment, a returned payment); case-insensitive, as express matches routes. */
const PAYMENTS_INTAKE_PATH = /^\/api\/obligations\/[^/]+\/payments(\/[^/]+\/return)?\/?$/i;

export function isPaymentsIntake(req: Request): boolean {
  return req.method === "POST" && PAYMENTS_INTAKE_PATH.test(req.path);
}

/**
 * Service accounts (other systems' payment feeds) reach the payments intake and nothing else: not
 * the escalations, /ops, Bull Board or /metrics. A leaked service secret must not requeue or read.
 */
export function serviceAccountsIntakeOnly(): RequestHandler {
  return (req, res, next) => {
    if (operatorOf(res).role === "service" && !isPaymentsIntake(req)) {
      res.status(403).json({ error: "service accounts may only post payments and returns (POST /api/obligations/:obligationId/payments, …/payments/:reference/return)" });
      return;
    }
    next();
  };
}

/** Payments come from service accounts only: operators and viewers may not post them. */
export function requireServiceRole(): RequestHandler {
  return (_req, res, next) => {
    if (operatorOf(res).role !== "service") {
      res.status(403).json({ error: "posting payments needs the service role" });
      return;
    }
    next();
  };
}

export function isMutating(method: string): boolean {
  return !["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase());
}

/** Viewers may look at anything but change nothing, whatever the route. */
export function viewersReadOnly(): RequestHandler {
  return (req, res, next) => {
    const role = operatorOf(res).role;
    if (isMutating(req.method) && role !== "operator" && !(role === "service" && isPaymentsIntake(req))) {
      res.status(403).json({ error: "this needs the operator role; viewers may only read" });
      return;
    }
    next();
  };
}

/**
 * The ops page's form token: derived from the user's own secret, so every server process computes
 * the same token without shared state, and nobody without the secret can forge it.
 */
export function formToken(users: readonly OpsUser[], operator: Operator): string {
  const user = users.find((u) => u.name === operator.name);
  const key = digest(`ops-form-token:${user?.secret ?? ""}`);
  return createHmac("sha256", key).update(operator.name, "utf8").digest("base64url");
}

export function formTokenMatches(users: readonly OpsUser[], operator: Operator, presented: unknown): boolean {
  if (typeof presented !== "string") return false;
  return timingSafeEqual(digest(presented), digest(formToken(users, operator)));
}
