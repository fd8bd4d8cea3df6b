import { describe, expect, it } from "vitest";
import { LedgerRuleError } from "../../src/domain/errors.js";
import {
  ACCOUNT_FAMILIES,
  ENTRY_TYPES,
  accountBalance,
  assertFamilyRule,
  assertPositiveAmount,
  idempotencyKeys,
  isCreditNormal,
  normalizeAccount,
  sameAccount,
  skipsBalanceCheck,
  type AccountFamily,
  type AccountRef,
  type EntryType,
} from "../../src/domain/ledgerRules.js";

const MORTGAGE = "11111111-1111-4111-8111-111111111111";
const OBLIGATION = "22222222-2222-4222-8222-222222222222";
const LENDER = "33333333-3333-4333-8333-333333333333";

/** Every kind of account there is, each with exactly the dimensions its family is kept per. */
const ACCOUNTS = {
  BORROWER_RECEIVABLE: { family: "BORROWER_RECEIVABLE", obligationId: OBLIGATION },
  TRUST_CASH: { family: "TRUST_CASH", mortgageId: MORTGAGE },
  "CONTROL:ACCRUAL": { family: "CONTROL", subaccount: "ACCRUAL", mortgageId: MORTGAGE },
  "CONTROL:ALLOCATION": { family: "CONTROL", subaccount: "ALLOCATION", mortgageId: MORTGAGE },
  LENDER_PAYABLE: { family: "LENDER_PAYABLE", mortgageId: MORTGAGE, lenderId: LENDER },
  SERVICING_REVENUE: { family: "SERVICING_REVENUE", mortgageId: MORTGAGE },
  SUSPENSE: { family: "SUSPENSE", mortgageId: MORTGAGE, obligationId: OBLIGATION },
} satisfies Record<string, AccountRef>;
type AccountKind = keyof typeof ACCOUNTS;
const KINDS = Object.keys(ACCOUNTS) as AccountKind[];

/** DESIGN.md §2, written out again here so that a change to the rules must change this table too. */
const CONTRACT: Record<Exclude<EntryType, "REVERSAL">, [AccountKind, AccountKind]> = {
  OBLIGATION_ACCRUED: ["BORROWER_RECEIVABLE", "CONTROL:ACCRUAL"],
  CASH_RECEIVED: ["TRUST_CASH", "BORROWER_RECEIVABLE"],
  LENDER_PAYABLE_CREATED: ["CONTROL:ALLOCATION", "LENDER_PAYABLE"],
  SERVICING_FEE_RECOGNIZED: ["CONTROL:ALLOCATION", "SERVICING_REVENUE"],
  SUSPENSE_ESCALATED: ["SUSPENSE", "BORROWER_RECEIVABLE"],
};
const TYPES = Object.keys(CONTRACT) as Array<keyof typeof CONTRACT>;

function ruleError(run: () => void): LedgerRuleError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(LedgerRuleError);
    expect((error as LedgerRuleError).code).toBe("LEDGER_RULE");
    expect((error as LedgerRuleError).retryable).toBe(false);
    return error as LedgerRuleError;
  }
  throw new Error("expected a LedgerRuleError, nothing was thrown");
}

describe("assertFamilyRule", () => {
  it("knows exactly the six entry types and six families of the contract", () => {
    expect([...ENTRY_TYPES].sort()).toEqual([...TYPES, "REVERSAL"].sort());
    expect([...ACCOUNT_FAMILIES].sort()).toEqual(
      ["BORROWER_RECEIVABLE", "CONTROL", "LENDER_PAYABLE", "SERVICING_REVENUE", "SUSPENSE", "TRUST_CASH"].sort(),
    );
  });

  for (const entryType of TYPES) {
    const [debit, credit] = CONTRACT[entryType];

    it(`accepts ${entryType} debiting ${debit} and crediting ${credit}`, () => {
      expect(() => assertFamilyRule(entryType, ACCOUNTS[debit], ACCOUNTS[credit])).not.toThrow();
    });

    it(`rejects ${entryType} on every other pairing of accounts`, () => {
      let rejected = 0;
      for (const d of KINDS) {
        for (const c of KINDS) {
          if (d === debit && c === credit) continue;
          const error = ruleError(() => assertFamilyRule(entryType, ACCOUNTS[d], ACCOUNTS[c]));
          expect(error.message).toContain(entryType);
          rejected++;
        }
      }
      expect(rejected).toBe(KINDS.length * KINDS.length - 1);
    });
  }

  it("names the expected and the given families when it rejects a pairing", () => {
    const error = ruleError(() => assertFamilyRule("CASH_RECEIVED", ACCOUNTS.LENDER_PAYABLE, ACCOUNTS.BORROWER_RECEIVABLE));
    expect(error.message).toBe(
      "CASH_RECEIVED must debit TRUST_CASH and credit BORROWER_RECEIVABLE, not LENDER_PAYABLE → BORROWER_RECEIVABLE",
    );
  });

  it("rejects an unknown entry type", () => {
    const error = ruleError(() =>
      assertFamilyRule("CASH_WITHDRAWN" as EntryType, ACCOUNTS.TRUST_CASH, ACCOUNTS.BORROWER_RECEIVABLE),
    );
    expect(error.message).toContain("unknown entry type CASH_WITHDRAWN");
  });

  it("rejects an unknown account family", () => {
    const error = ruleError(() =>
      assertFamilyRule("CASH_RECEIVED", { family: "PETTY_CASH" as AccountFamily, mortgageId: MORTGAGE }, ACCOUNTS.BORROWER_RECEIVABLE),
    );
    expect(error.message).toContain("unknown account family PETTY_CASH");
  });

  const dimensions: Array<[AccountKind, "mortgageId" | "obligationId" | "lenderId"]> = [
    ["BORROWER_RECEIVABLE", "obligationId"],
    ["TRUST_CASH", "mortgageId"],
    ["CONTROL:ACCRUAL", "mortgageId"],
    ["CONTROL:ALLOCATION", "mortgageId"],
    ["LENDER_PAYABLE", "mortgageId"],
    ["LENDER_PAYABLE", "lenderId"],
    ["SERVICING_REVENUE", "mortgageId"],
    ["SUSPENSE", "mortgageId"],
    ["SUSPENSE", "obligationId"],
  ];
  for (const [kind, dimension] of dimensions) {
    it(`rejects a ${kind} account without its ${dimension}, on either side`, () => {
      const entryType = TYPES.find((t) => CONTRACT[t].includes(kind))!;
      const [debit, credit] = CONTRACT[entryType];
      for (const [missing, emptyValue] of [[undefined, "undefined"], [null, "null"], ["", "empty"]] as const) {
        const broken = { ...ACCOUNTS[kind], [dimension]: missing };
        const error = ruleError(() =>
          assertFamilyRule(entryType, debit === kind ? broken : ACCOUNTS[debit], credit === kind ? broken : ACCOUNTS[credit]),
        );
        expect(error.message, emptyValue).toContain(`kept per ${dimension}`);
      }
    });
  }

  it("rejects a CONTROL account without a subaccount", () => {
    const error = ruleError(() =>
      assertFamilyRule("OBLIGATION_ACCRUED", ACCOUNTS.BORROWER_RECEIVABLE, { family: "CONTROL", mortgageId: MORTGAGE }),
    );
    expect(error.message).toContain("subaccount");
  });

  it("rejects a subaccount on any family but CONTROL", () => {
    const error = ruleError(() =>
      assertFamilyRule("CASH_RECEIVED", { ...ACCOUNTS.TRUST_CASH, subaccount: "ALLOCATION" }, ACCOUNTS.BORROWER_RECEIVABLE),
    );
    expect(error.message).toContain("only CONTROL accounts have a subaccount");
  });

  it("tolerates dimensions a family is not kept per (they are dropped by normalizeAccount)", () => {
    expect(() =>
      assertFamilyRule("CASH_RECEIVED", { ...ACCOUNTS.TRUST_CASH, lenderId: LENDER }, { ...ACCOUNTS.BORROWER_RECEIVABLE, mortgageId: MORTGAGE }),
    ).not.toThrow();
  });
});

describe("assertFamilyRule for a REVERSAL", () => {
  const suspense = { debit: ACCOUNTS.SUSPENSE, credit: ACCOUNTS.BORROWER_RECEIVABLE };

  it("accepts the mirror of the reversed entry", () => {
    expect(() => assertFamilyRule("REVERSAL", ACCOUNTS.BORROWER_RECEIVABLE, ACCOUNTS.SUSPENSE, suspense)).not.toThrow();
  });

  it("accepts the mirror of any entry type", () => {
    for (const entryType of TYPES) {
      const [debit, credit] = CONTRACT[entryType];
      const reversed = { debit: ACCOUNTS[debit], credit: ACCOUNTS[credit] };
      expect(() => assertFamilyRule("REVERSAL", ACCOUNTS[credit], ACCOUNTS[debit], reversed)).not.toThrow();
    }
  });

  it("requires the entry it reverses", () => {
    const error = ruleError(() => assertFamilyRule("REVERSAL", ACCOUNTS.BORROWER_RECEIVABLE, ACCOUNTS.SUSPENSE));
    expect(error.message).toContain("must name the entry it reverses");
  });

  it("rejects a reversal in the same direction as the reversed entry", () => {
    const error = ruleError(() => assertFamilyRule("REVERSAL", ACCOUNTS.SUSPENSE, ACCOUNTS.BORROWER_RECEIVABLE, suspense));
    expect(error.message).toContain("debits the reversed entry's credit account");
  });

  it("rejects a reversal that touches another obligation's or mortgage's account", () => {
    const otherObligation = "44444444-4444-4444-8444-444444444444";
    ruleError(() =>
      assertFamilyRule("REVERSAL", { ...ACCOUNTS.BORROWER_RECEIVABLE, obligationId: otherObligation }, ACCOUNTS.SUSPENSE, suspense),
    );
    ruleError(() =>
      assertFamilyRule("REVERSAL", ACCOUNTS.BORROWER_RECEIVABLE, { ...ACCOUNTS.SUSPENSE, mortgageId: otherObligation }, suspense),
    );
  });

  it("still checks the shape of its own accounts", () => {
    ruleError(() =>
      assertFamilyRule("REVERSAL", { family: "BORROWER_RECEIVABLE" }, ACCOUNTS.SUSPENSE, {
        debit: ACCOUNTS.SUSPENSE,
        credit: { family: "BORROWER_RECEIVABLE" },
      }),
    );
  });
});

describe("assertPositiveAmount", () => {
  it("accepts a positive bigint, however large", () => {
    expect(() => assertPositiveAmount(1n)).not.toThrow();
    expect(() => assertPositiveAmount(2n ** 62n)).not.toThrow();
  });

  it("rejects zero and negative amounts", () => {
    expect(ruleError(() => assertPositiveAmount(0n)).message).toContain("positive");
    expect(ruleError(() => assertPositiveAmount(-1n)).message).toContain("positive");
  });

  it("rejects numbers, fractions, strings and nothing: money is bigint cents", () => {
    for (const amount of [1, 1.5, 0.01, "100", null, undefined, Number.NaN]) {
      expect(ruleError(() => assertPositiveAmount(amount)).message).toContain("bigint");
    }
  });
});

describe("account balances", () => {
  it("treats lender payables and servicing revenue as credit-normal, everything else as debit-normal", () => {
    const creditNormal = ACCOUNT_FAMILIES.filter(isCreditNormal);
    expect(creditNormal.sort()).toEqual(["LENDER_PAYABLE", "SERVICING_REVENUE"]);
  });

  it("is credits − debits for credit-normal families and debits − credits for the others", () => {
    for (const family of ACCOUNT_FAMILIES) {
      const expected = isCreditNormal(family) ? 30n : -30n;
      expect(accountBalance(family, 70n, 100n), family).toBe(expected);
      expect(accountBalance(family, 100n, 100n), family).toBe(0n);
    }
    expect(accountBalance("TRUST_CASH", 2n ** 62n, 1n)).toBe(2n ** 62n - 1n);
  });
});

describe("skipsBalanceCheck", () => {
  it("exempts CONTROL and BORROWER_RECEIVABLE accounts from the balance check for every entry type", () => {
    for (const entryType of ENTRY_TYPES) {
      expect(skipsBalanceCheck(entryType, "CONTROL")).toBe(true);
      expect(skipsBalanceCheck(entryType, "BORROWER_RECEIVABLE")).toBe(true);
    }
  });

  it("exempts SUSPENSE_ESCALATED and REVERSAL postings on every family", () => {
    for (const family of ACCOUNT_FAMILIES) {
      expect(skipsBalanceCheck("SUSPENSE_ESCALATED", family)).toBe(true);
      expect(skipsBalanceCheck("REVERSAL", family)).toBe(true);
    }
  });

  it("checks every other posting on trust cash, lender payables, servicing revenue and suspense", () => {
    for (const entryType of ["OBLIGATION_ACCRUED", "CASH_RECEIVED", "LENDER_PAYABLE_CREATED", "SERVICING_FEE_RECOGNIZED"] as const) {
      for (const family of ["TRUST_CASH", "LENDER_PAYABLE", "SERVICING_REVENUE", "SUSPENSE"] as const) {
        expect(skipsBalanceCheck(entryType, family), `${entryType} ${family}`).toBe(false);
      }
    }
  });
});

describe("normalizeAccount and sameAccount", () => {
  it("keeps only the dimensions the family is kept per", () => {
    const everything = { mortgageId: MORTGAGE, obligationId: OBLIGATION, lenderId: LENDER };
    expect(normalizeAccount({ family: "BORROWER_RECEIVABLE", ...everything })).toEqual({
      family: "BORROWER_RECEIVABLE",
      subaccount: null,
      mortgageId: null,
      obligationId: OBLIGATION,
      lenderId: null,
    });
    expect(normalizeAccount({ family: "LENDER_PAYABLE", subaccount: "ACCRUAL", ...everything })).toEqual({
      family: "LENDER_PAYABLE",
      subaccount: null,
      mortgageId: MORTGAGE,
      obligationId: null,
      lenderId: LENDER,
    });
    expect(normalizeAccount({ family: "CONTROL", subaccount: "ALLOCATION", ...everything })).toEqual({
      family: "CONTROL",
      subaccount: "ALLOCATION",
      mortgageId: MORTGAGE,
      obligationId: null,
      lenderId: null,
    });
    expect(normalizeAccount({ family: "SUSPENSE", ...everything })).toMatchObject({ mortgageId: MORTGAGE, obligationId: OBLIGATION, lenderId: null });
  });

  it("finds the same account again whatever extra dimensions the caller passed", () => {
    for (const kind of KINDS) {
      const ref = ACCOUNTS[kind];
      const cluttered = { mortgageId: MORTGAGE, obligationId: OBLIGATION, lenderId: LENDER, ...ref };
      expect(sameAccount(normalizeAccount(cluttered), normalizeAccount(ref)), kind).toBe(true);
    }
  });

  it("treats a missing and a null dimension as equal, and any differing one as another account", () => {
    expect(sameAccount({ family: "TRUST_CASH", mortgageId: MORTGAGE }, { family: "TRUST_CASH", mortgageId: MORTGAGE, lenderId: null })).toBe(true);
    expect(sameAccount(ACCOUNTS["CONTROL:ACCRUAL"], ACCOUNTS["CONTROL:ALLOCATION"])).toBe(false);
    expect(sameAccount(ACCOUNTS.TRUST_CASH, ACCOUNTS.SERVICING_REVENUE)).toBe(false);
    expect(sameAccount(ACCOUNTS.LENDER_PAYABLE, { ...ACCOUNTS.LENDER_PAYABLE, lenderId: OBLIGATION })).toBe(false);
  });
});

describe("idempotencyKeys", () => {
  it("spells the keys exactly as the contract does", () => {
    expect(idempotencyKeys.obligationAccrued(OBLIGATION)).toBe(`cash-ledger:obligation-accrued:${OBLIGATION}`);
    expect(idempotencyKeys.cashReceived("feed-a", "PAY-42")).toBe("cash-ledger:cash-received:feed-a:pay-42");
    expect(idempotencyKeys.cashReceivedBefore("PAY-42")).toBe("cash-ledger:cash-received:PAY-42");
    expect(idempotencyKeys.lenderPayableCreated(OBLIGATION, LENDER, 2)).toBe(`cash-ledger:lender-payable-created:${OBLIGATION}:${LENDER}:2`);
    expect(idempotencyKeys.servicingFeeRecognized(OBLIGATION, 1)).toBe(`cash-ledger:servicing-fee-recognized:${OBLIGATION}:1`);
    expect(idempotencyKeys.suspenseEscalated(OBLIGATION)).toBe(`suspense-escalation:${OBLIGATION}`);
    expect(idempotencyKeys.suspenseTopUp(OBLIGATION, 2)).toBe(`suspense-escalation:${OBLIGATION}:2`);
    expect(idempotencyKeys.reversal(MORTGAGE)).toBe(`cash-ledger:reversal:${MORTGAGE}`);
  });
});
