// Pro-rata split of the distributable cash over the lenders' units, by largest remainder (DESIGN.md §3 step 5).
import { NoActivePositionsError } from "./errors.js";

export interface Position {
  lenderId: string;
  units: bigint;
}

export interface Share {
  lenderId: string;
  amount: bigint;
  ownershipUnits: bigint;
  totalUnits: bigint;
}

/**
 * floor(distributable × units / total) each, then the leftover cents one each to the largest
 * remainders, ties by lender id ascending. Zero shares produce no entry. The result is ordered by
 * lender id, so it does not depend on the order of the input.
 */
export function splitProRata(mortgageId: string, distributable: bigint, positions: readonly Position[]): Share[] {
  if (distributable < 0n) throw new RangeError("distributable amount must not be negative");
  const active = positions.filter((p) => {
    if (p.units < 0n) throw new RangeError(`lender ${p.lenderId} has negative units`);
    return p.units > 0n;
  });
  if (active.length === 0) throw new NoActivePositionsError(mortgageId);
  const totalUnits = active.reduce((sum, p) => sum + p.units, 0n);

  const parts = active.map((p) => ({
    lenderId: p.lenderId,
    units: p.units,
    amount: (distributable * p.units) / totalUnits,
    remainder: (distributable * p.units) % totalUnits,
  }));
  let leftover = distributable - parts.reduce((sum, p) => sum + p.amount, 0n);
  const byRemainder = [...parts].sort((a, b) =>
    a.remainder === b.remainder ? compareIds(a.lenderId, b.lenderId) : a.remainder > b.remainder ? -1 : 1,
  );
  for (const part of byRemainder) {
    if (leftover === 0n) break;
    part.amount += 1n;
    leftover -= 1n;
  }
  return parts
    .filter((p) => p.amount > 0n)
    .sort((a, b) => compareIds(a.lenderId, b.lenderId))
    .map((p) => ({ lenderId: p.lenderId, amount: p.amount, ownershipUnits: p.units, totalUnits }));
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
