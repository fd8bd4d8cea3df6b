import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LedgerRuleError } from "../../src/domain/errors.js";
import { idempotencyKeys, planSuspense, type SuspensePlan } from "../../src/domain/ledgerRules.js";

const OBLIGATION = "30000000-0000-0000-0000-000000000001";

/** A toy SUSPENSE account of one obligation: its postings and which of them were reversed. */
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
    const existing = this.postings.get(plan.idempotencyKey);
    // The ledger refuses a key posted before with another amount: a plan must never ask for that.
    if (existing !== undefined) expect(existing).toBe(plan.amount);
    else this.postings.set(plan.idempotencyKey, plan.amount);
  }
  reverseAll(): void {
    for (const key of this.postings.keys()) this.reversed.add(key);
  }
  escalate(settledAmount: bigint): SuspensePlan {
    const plan = planSuspense(OBLIGATION, { settledAmount, suspenseBalance: this.balance, parkedBefore: this.postings.size > 0 });
    this.apply(plan);
    return plan;
  }
}

describe("planSuspense: SUSPENSE of an escalated obligation equals its settled amount", () => {
  it("parks the whole settled amount under the obligation's key the first time", () => {
    expect(planSuspense(OBLIGATION, { settledAmount: 90_000n, suspenseBalance: 0n, parkedBefore: false })).toEqual({
      kind: "park",
      amount: 90_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}`,
    });
  });

  it("tops up only the difference when late cash raised the settled amount, under a key naming the new amount", () => {
    expect(planSuspense(OBLIGATION, { settledAmount: 100_000n, suspenseBalance: 90_000n, parkedBefore: true })).toEqual({
      kind: "top-up",
      amount: 10_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}:100000`,
    });
    expect(idempotencyKeys.suspenseTopUp(OBLIGATION, 100_000n)).toBe(`suspense-escalation:${OBLIGATION}:100000`);
  });

  it("posts nothing when SUSPENSE already holds the settled amount (a repeated escalation)", () => {
    expect(planSuspense(OBLIGATION, { settledAmount: 100_000n, suspenseBalance: 100_000n, parkedBefore: true })).toEqual({ kind: "none" });
  });

  it("restates SUSPENSE when the settled amount fell below what it holds", () => {
    expect(planSuspense(OBLIGATION, { settledAmount: 90_000n, suspenseBalance: 100_000n, parkedBefore: true })).toEqual({
      kind: "restate",
      amount: 90_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}:90000`,
    });
  });

  it("parks again under a new key after every posting was reversed", () => {
    expect(planSuspense(OBLIGATION, { settledAmount: 5_000n, suspenseBalance: 0n, parkedBefore: true })).toMatchObject({
      kind: "top-up",
      amount: 5_000n,
      idempotencyKey: `suspense-escalation:${OBLIGATION}:5000`,
    });
  });

  it("refuses a settled amount that is not positive", () => {
    expect(() => planSuspense(OBLIGATION, { settledAmount: 0n, suspenseBalance: 0n, parkedBefore: false })).toThrow(LedgerRuleError);
  });

  it("the issue's case: 90,000 parked, 10,000 arrives, escalated again and again: one 10,000 top-up, then reversal clears it all", () => {
    const account = new SuspenseAccount();
    expect(account.escalate(90_000n).kind).toBe("park");
    expect(account.escalate(100_000n)).toMatchObject({ kind: "top-up", amount: 10_000n });
    expect(account.escalate(100_000n).kind).toBe("none");
    expect(account.balance).toBe(100_000n);
    expect([...account.postings.values()]).toEqual([90_000n, 10_000n]);
    account.reverseAll();
    expect(account.balance).toBe(0n);
  });

  it("keeps SUSPENSE equal to the settled amount through any history of settled amounts, never reusing a key for another amount (property)", () => {
    // The settled amount is the obligation's amount until the first CASH_RECEIVED, then the sum of
    // the received cash, which only grows (the journal is append-only).
    const history = fc.record({
      amount: fc.bigInt({ min: 1n, max: 10_000_000n }),
      firstCash: fc.option(fc.bigInt({ min: 1n, max: 20_000_000n }), { nil: undefined }),
      laterCash: fc.array(fc.bigInt({ min: 1n, max: 5_000_000n }), { maxLength: 6 }),
      escalateAfter: fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }),
    });
    fc.assert(
      fc.property(history, ({ amount, firstCash, laterCash, escalateAfter }) => {
        const settled: bigint[] = [amount];
        if (firstCash !== undefined) {
          let received = firstCash;
          settled.push(received);
          for (const cash of laterCash) settled.push((received += cash));
        }
        const account = new SuspenseAccount();
        account.escalate(settled[0]!);
        expect(account.balance).toBe(settled[0]);
        for (const [i, value] of settled.slice(1).entries()) {
          if (!escalateAfter[i % escalateAfter.length]) continue;
          account.escalate(value);
          expect(account.balance).toBe(value);
        }
        const last = settled[settled.length - 1]!;
        account.escalate(last);
        expect(account.balance).toBe(last);
        for (const posted of account.postings.values()) expect(posted > 0n).toBe(true);
        account.reverseAll();
        expect(account.balance).toBe(0n);
      }),
      { numRuns: 1000 },
    );
  });
});
