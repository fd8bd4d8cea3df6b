import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LedgerRuleError } from "../../src/domain/errors.js";
import { idempotencyKeys, planSuspense, type SuspensePlan } from "../../src/domain/ledgerRules.js";

const OBLIGATION = "30000000-0000-0000-0000-000000000001";

/** A toy SUSPENSE account of one obligation: its postings (key → amount) and which of them were reversed. */
class SuspenseAccount {
  postings = new Map<string, bigint>();
  reversed = new Set<string>();
  get balance(): bigint {
    let total = 0n;
    for (const [key, amount] of this.postings) if (!this.reversed.has(key)) total += amount;
    return total;
  }
  apply(plan: SuspensePlan): void {
    if (plan.kind === "none") return;
    if (plan.kind === "restate") this.reverseAll();
    if (plan.idempotencyKey === null) return;
    // The ledger refuses a key posted before with another amount, and replays one with the same
    // amount (SUSPENSE would then be short): a plan must never reuse a key at all.
    expect(this.postings.has(plan.idempotencyKey)).toBe(false);
    expect(plan.amount > 0n).toBe(true);
    this.postings.set(plan.idempotencyKey, plan.amount);
  }
  reverseAll(): void {
    for (const key of this.postings.keys()) this.reversed.add(key);
  }
  escalate(target: bigint): SuspensePlan {
    const plan = planSuspense(OBLIGATION, { target, suspenseBalance: this.balance, postedBefore: this.postings.size });
    this.apply(plan);
    return plan;
  }
}

describe("planSuspense: SUSPENSE of an escalated obligation equals net settled cash − allocated", () => {
  it("parks the whole target under the obligation's key the first time", () => {
    expect(planSuspense(OBLIGATION, { target: 90_000n, suspenseBalance: 0n, postedBefore: 0 })).toEqual({
      kind: "park",
      amount: 90_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}`,
    });
  });

  it("tops up only the difference when late cash raised the target, under the next sequence key", () => {
    expect(planSuspense(OBLIGATION, { target: 100_000n, suspenseBalance: 90_000n, postedBefore: 1 })).toEqual({
      kind: "top-up",
      amount: 10_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}:2`,
    });
    expect(idempotencyKeys.suspenseTopUp(OBLIGATION, 7)).toBe(`suspense-escalation:${OBLIGATION}:7`);
  });

  it("posts nothing when SUSPENSE already holds the target (a repeated escalation), nor when the target is 0", () => {
    expect(planSuspense(OBLIGATION, { target: 100_000n, suspenseBalance: 100_000n, postedBefore: 1 })).toEqual({ kind: "none" });
    expect(planSuspense(OBLIGATION, { target: 0n, suspenseBalance: 0n, postedBefore: 0 })).toEqual({ kind: "none" });
    expect(planSuspense(OBLIGATION, { target: -5n, suspenseBalance: 0n, postedBefore: 0 })).toEqual({ kind: "none" });
  });

  it("restates SUSPENSE when the target fell below what it holds, and only reverses when it fell to 0", () => {
    expect(planSuspense(OBLIGATION, { target: 90_000n, suspenseBalance: 100_000n, postedBefore: 2 })).toEqual({
      kind: "restate",
      amount: 90_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}:3`,
    });
    expect(planSuspense(OBLIGATION, { target: 0n, suspenseBalance: 100_000n, postedBefore: 1 })).toEqual({ kind: "restate", amount: 0n, idempotencyKey: null });
  });

  it("refuses a SUSPENSE balance that no posting explains", () => {
    expect(() => planSuspense(OBLIGATION, { target: 10n, suspenseBalance: 5n, postedBefore: 0 })).toThrow(LedgerRuleError);
  });

  it("the issue's case: corrected 100,000 → 90,000 → 100,000 → 90,000 holds 90,000 at the end, every key new", () => {
    const account = new SuspenseAccount();
    for (const target of [100_000n, 90_000n, 100_000n, 90_000n]) {
      account.escalate(target);
      expect(account.balance).toBe(target);
    }
    expect(account.escalate(90_000n).kind).toBe("none");
    expect(account.balance).toBe(90_000n);
  });

  it("keeps SUSPENSE equal to the target through any history of targets, never reusing a key (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.bigInt({ min: -1_000n, max: 10_000_000n }), { minLength: 1, maxLength: 12 }), (targets) => {
        const account = new SuspenseAccount();
        for (const target of targets) {
          account.escalate(target);
          expect(account.balance).toBe(target > 0n ? target : 0n);
        }
        account.reverseAll();
        expect(account.balance).toBe(0n);
      }),
      { numRuns: 1000 },
    );
  });
});
