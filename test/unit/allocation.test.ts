import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EntriesDisagreeWithJournalError,
  planAllocation,
  type AllocationInput,
  type AllocationPlan,
  type AllocationPosting,
  type ProjectionEntry,
} from "../../src/domain/allocation.js";
import { NoActivePositionsError, ObligationNotSettledError } from "../../src/domain/errors.js";

const OBLIGATION = "30000000-0000-0000-0000-000000000001";
const MORTGAGE = "20000000-0000-0000-0000-000000000001";
const LENDERS = ["10000000-0000-0000-0000-00000000000a", "10000000-0000-0000-0000-00000000000b", "10000000-0000-0000-0000-00000000000c"];

/** A toy journal and projection of one obligation, to which plans are applied as db/dispersals.ts would. */
class Obligation {
  postings: AllocationPosting[] = [];
  entries: ProjectionEntry[] = [];
  private ids = 0;
  constructor(
    public status = "settled",
    public netCash = 100_000n,
    public units: bigint[] = [5000n, 3000n, 2000n],
    public feeBps = 100,
  ) {}
  input(): AllocationInput {
    return {
      obligationId: OBLIGATION,
      mortgageId: MORTGAGE,
      status: this.status,
      netCash: this.netCash,
      postings: this.postings,
      entries: this.entries,
      fee: { obligationType: "regular_interest", principal: 12_000_000n, servicingFeeBps: this.feeBps, paymentFrequency: "monthly" },
      positions: this.units.map((units, i) => ({ lenderId: LENDERS[i]!, units })),
    };
  }
  disperse(): AllocationPlan {
    const plan = planAllocation(this.input());
    const key = (p: { kind: string; lenderId: string | null; allocation: number }) => `${p.kind}|${p.lenderId}|${p.allocation}`;
    for (const posting of plan.reverse) {
      posting.reversed = true;
      const entry = this.entries.find((e) => key(e) === key(posting));
      if (entry) entry.status = "reversed";
    }
    for (const entry of plan.markReversed) entry.status = "reversed";
    for (const posting of plan.restore) this.entries.push({ entryId: `e${++this.ids}`, kind: posting.kind, lenderId: posting.lenderId, allocation: posting.allocation, amount: posting.amount, status: "pending" });
    if (plan.allocate) {
      const { allocation, fee, shares } = plan.allocate;
      const add = (kind: "payable" | "fee", lenderId: string | null, amount: bigint) => {
        this.postings.push({ postingId: `p${++this.ids}`, kind, lenderId, allocation, amount, mortgageId: MORTGAGE, reversed: false });
        this.entries.push({ entryId: `e${++this.ids}`, kind, lenderId, allocation, amount, status: "pending" });
      };
      for (const share of shares) add("payable", share.lenderId, share.amount);
      if (fee > 0n) add("fee", null, fee);
    }
    return plan;
  }
  get allocated(): bigint {
    return this.postings.filter((p) => !p.reversed).reduce((sum, p) => sum + p.amount, 0n);
  }
  payAll(): void {
    for (const entry of this.entries) if (entry.status === "pending") entry.status = "paid";
  }
}

describe("planAllocation: a dispersal posts net settled cash − what the journal allocates", () => {
  it("first dispersal: allocation 1, the fee first, the rest by units", () => {
    const o = new Obligation();
    const plan = o.disperse();
    expect(plan.allocate).toEqual({
      allocation: 1,
      fee: 10_000n,
      shares: [
        { lenderId: LENDERS[0], amount: 45_000n, ownershipUnits: 5000n, totalUnits: 10_000n },
        { lenderId: LENDERS[1], amount: 27_000n, ownershipUnits: 3000n, totalUnits: 10_000n },
        { lenderId: LENDERS[2], amount: 18_000n, ownershipUnits: 2000n, totalUnits: 10_000n },
      ],
    });
    expect(o.allocated).toBe(100_000n);
  });

  it("replays as nothing to post, whatever happened to the entries' rows meanwhile (deleted ones are restored, not posted again)", () => {
    const o = new Obligation();
    o.disperse();
    expect(o.disperse()).toMatchObject({ allocate: null, reverse: [], restore: [] });
    const deleted = o.entries.splice(0, 2);
    const plan = o.disperse();
    expect(plan.allocate).toBeNull();
    expect(plan.restore.map((p) => p.amount)).toEqual(deleted.map((e) => e.amount));
    expect(o.allocated).toBe(100_000n);
  });

  it("refuses to post over entries edited by another system: amounts shifted between lenders, a lender changed, an extra row", () => {
    const shifted = new Obligation();
    shifted.disperse();
    shifted.entries[0]!.amount += 1_000n;
    shifted.entries[1]!.amount -= 1_000n;
    expect(() => shifted.disperse()).toThrow(EntriesDisagreeWithJournalError);

    const moved = new Obligation();
    moved.disperse();
    moved.entries[0]!.lenderId = "10000000-0000-0000-0000-0000000000ff";
    expect(() => moved.disperse()).toThrow(/has no posting/);
  });

  it("late cash: allocation 2 of only the difference; the fee is not taken twice", () => {
    const o = new Obligation("settled", 60_000n);
    o.disperse();
    o.netCash = 100_000n;
    const plan = o.disperse();
    expect(plan.allocate).toMatchObject({ allocation: 2, fee: 0n });
    expect(plan.allocate!.shares.reduce((s, x) => s + x.amount, 0n)).toBe(40_000n);
    expect(o.allocated).toBe(100_000n);
  });

  it("a returned payment reverses every pending allocation and allocates the net again", () => {
    const o = new Obligation();
    o.disperse();
    o.netCash = 70_000n;
    const plan = o.disperse();
    expect(plan.reverse).toHaveLength(4);
    expect(plan.allocate).toMatchObject({ allocation: 2, fee: 10_000n });
    expect(o.allocated).toBe(70_000n);
    expect(o.entries.filter((e) => e.status === "reversed")).toHaveLength(4);
  });

  it("paid entries are never reversed: what they leave uncovered is a shortfall", () => {
    const o = new Obligation();
    o.disperse();
    o.payAll();
    o.netCash = 30_000n;
    const plan = o.disperse();
    expect(plan).toMatchObject({ reverse: [], allocate: null, shortfall: 70_000n });
  });

  it("an obligation no longer settled keeps nothing allocated beyond its cash, and allocates nothing new", () => {
    const o = new Obligation();
    o.disperse();
    o.status = "partially_settled";
    o.netCash = 50_000n;
    const plan = o.disperse();
    expect(plan.reverse).toHaveLength(4);
    expect(plan.allocate).toBeNull();
    expect(o.allocated).toBe(0n);
    expect(() => o.disperse()).toThrow(ObligationNotSettledError);
    expect(() => new Obligation("due").disperse()).toThrow(ObligationNotSettledError);
  });

  it("cash to split with nobody holding units is left unallocated with a retryable error; a fee that takes it all needs no lender", () => {
    const nobody = new Obligation("settled", 100_000n, [0n]).disperse();
    expect(nobody).toMatchObject({ reverse: [], restore: [], allocate: null, allocatedAfter: 0n, unallocatable: { amount: 100_000n } });
    expect(nobody.unallocatable?.error).toBeInstanceOf(NoActivePositionsError);
    const feeOnly = new Obligation("settled", 5_000n, [0n]);
    expect(feeOnly.disperse().allocate).toEqual({ allocation: 1, fee: 5_000n, shares: [] });
  });

  it("cash returned on a mortgage whose positions were all zeroed: the pending allocation is reversed first, only the remainder waits for positions", () => {
    const o = new Obligation("settled", 100_000n);
    o.disperse();
    o.units = [0n, 0n, 0n];
    o.netCash = 60_000n;
    const plan = o.disperse();
    // Before: NoActivePositionsError thrown, nothing reversed, the journal still allocating 100,000 of 60,000.
    expect(plan.reverse).toHaveLength(4);
    expect(plan).toMatchObject({ allocate: null, shortfall: 0n, allocatedAfter: 0n });
    expect(plan.unallocatable).toMatchObject({ amount: 60_000n });
    expect(plan.unallocatable?.error).toBeInstanceOf(NoActivePositionsError);
    expect(plan.unallocatable?.error.retryable).toBe(true);
    expect(o.allocated).toBe(0n);
    expect(o.entries.every((e) => e.status === "reversed")).toBe(true);
    // The next attempt has nothing left to reverse: the whole 60,000 waits (SUSPENSE once escalated).
    const again = o.disperse();
    expect(again).toMatchObject({ reverse: [], restore: [], markReversed: [], allocate: null, allocatedAfter: 0n });
    expect(again.unallocatable).toMatchObject({ amount: 60_000n });
    // Positions back: allocation 2 of the 60,000, fee first.
    o.units = [5000n, 3000n, 2000n];
    expect(o.disperse().allocate).toMatchObject({ allocation: 2, fee: 10_000n });
    expect(o.allocated).toBe(60_000n);
  });

  it("cash returned with nobody holding units and entries paid: the pending part is reversed, the paid part stays (a shortfall, nothing to split)", () => {
    const o = new Obligation("settled", 100_000n, [5000n, 3000n, 2000n], 0);
    o.disperse();
    o.entries[0]!.status = "paid"; // 50,000 to the first lender
    o.units = [0n, 0n, 0n];
    o.netCash = 60_000n;
    const plan = o.disperse();
    expect(plan.reverse).toHaveLength(2);
    expect(plan).toMatchObject({ allocate: null, shortfall: 0n, allocatedAfter: 50_000n, unallocatable: { amount: 10_000n } });
    expect(o.allocated).toBe(50_000n);
    o.netCash = 30_000n;
    expect(o.disperse()).toMatchObject({ reverse: [], allocate: null, unallocatable: null, shortfall: 20_000n });
  });

  it("conserves: after any history of cash in and out, the journal allocates the net cash (or names the shortfall), never negative, each allocation numbered once (property)", () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant("cash" as const), amount: fc.bigInt({ min: -80_000n, max: 80_000n }) }),
      fc.record({ kind: fc.constant("pay" as const) }),
      fc.record({ kind: fc.constant("status" as const), settled: fc.boolean() }),
      fc.record({ kind: fc.constant("delete" as const), index: fc.nat(20) }),
      fc.record({ kind: fc.constant("positions" as const), zeroed: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 12 }), fc.array(fc.bigInt({ min: 0n, max: 9_000n }), { minLength: 1, maxLength: 4 }), fc.integer({ min: 0, max: 10_000 }), (steps, units, bps) => {
        if (!units.some((u) => u > 0n)) units[0] = 1n;
        const o = new Obligation("settled", 100_000n, units, bps);
        const run = () => {
          try {
            return o.disperse();
          } catch (error) {
            if (error instanceof ObligationNotSettledError) return null;
            throw error;
          }
        };
        run();
        for (const s of steps) {
          if (s.kind === "cash") o.netCash = o.netCash + s.amount > 0n ? o.netCash + s.amount : 0n;
          if (s.kind === "pay") o.payAll();
          if (s.kind === "status") o.status = s.settled ? "settled" : "partially_settled";
          if (s.kind === "delete" && o.entries.length > 0) o.entries.splice(s.index % o.entries.length, 1);
          if (s.kind === "positions") o.units = s.zeroed ? units.map(() => 0n) : units;
          const plan = run();
          const paid = o.postings.filter((p) => !p.reversed && o.entries.some((e) => e.status === "paid" && e.kind === p.kind && e.lenderId === p.lenderId && e.allocation === p.allocation));
          const paidSum = paid.reduce((sum, p) => sum + p.amount, 0n);
          if (plan?.unallocatable) {
            // Nobody holds units: what is allocated plus the remainder that waits is the net cash, never more.
            expect(o.status).toBe("settled");
            expect(o.allocated + plan.unallocatable.amount).toBe(o.netCash);
            expect(plan.unallocatable.amount > 0n).toBe(true);
          } else if (o.status === "settled") expect(o.allocated).toBe(o.netCash > paidSum ? o.netCash : paidSum);
          else expect(o.allocated <= (o.netCash > paidSum ? o.netCash : paidSum)).toBe(true);
          for (const p of o.postings) expect(p.amount > 0n).toBe(true);
          if (plan) expect(plan.shortfall).toBe(paidSum > o.netCash ? paidSum - o.netCash : 0n);
          // Idempotent: the same state again posts nothing.
          if (o.status === "settled") expect(run()).toMatchObject({ allocate: null, reverse: [], restore: [] });
        }
        const numbers = new Set(o.postings.map((p) => `${p.kind}|${p.lenderId}|${p.allocation}`));
        expect(numbers.size).toBe(o.postings.length);
      }),
      { numRuns: 500, endOnFailure: true },
    );
  });
});
