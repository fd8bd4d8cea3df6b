// /ops "Recently resolved": escalations that were resolved, never rows that healed on a retry
// without ever escalating, and as many as the list shows even when those outnumber them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql } from "drizzle-orm";
import { startHttpServer, type HttpServer } from "../../src/dashboard/app.js";
import { givenMortgage } from "../helpers/factories.js";
import { givenEscalations } from "../helpers/healingRows.js";
import { httpCall } from "../helpers/http.js";
import { testPipeline } from "../helpers/pipeline.js";
import { testDb } from "../helpers/testDb.js";

const VIEWER = { name: "vera", secret: "vera-viewer-secret" };
const database = await testDb();
const { ctx, config } = testPipeline(database, { OPS_USERS: `${VIEWER.name}:viewer:${VIEWER.secret}` });

let http: HttpServer;
let wasEscalated: string[];
let neverEscalated: string[];

beforeAll(async () => {
  const mortgage = await givenMortgage(database, { lenders: [10_000] });
  // Two escalations resolved an hour ago, then twelve obligations that healed on a retry (no escalation) since.
  wasEscalated = await givenEscalations(database, { mortgageId: mortgage.mortgageId, count: 2, escalatedAt: new Date(Date.now() - 3_600_000) });
  neverEscalated = await givenEscalations(database, { mortgageId: mortgage.mortgageId, count: 12 });
  await database.db.execute(sql`
    update dispersal_healing_attempts
       set status = 'resolved', resolved_at = now(),
           escalated_at = case when obligation_id = any(${`{${neverEscalated.join(",")}}`}::uuid[]) then null else escalated_at end
     where obligation_id = any(${`{${[...wasEscalated, ...neverEscalated].join(",")}}`}::uuid[])`);
  http = await startHttpServer(ctx, { ...config, PORT: 0, HOST: "127.0.0.1" });
});

afterAll(async () => {
  await http?.close();
});

function resolvedSection(page: string): string {
  const start = page.indexOf('<section aria-labelledby="resolved">');
  expect(start).toBeGreaterThan(0);
  return page.slice(start, page.indexOf("</section>", start));
}

describe("the recently-resolved list of /ops", () => {
  it("filters out rows that never escalated before it takes its newest ten", async () => {
    const page = await httpCall(http.url, "GET", "/ops", { as: VIEWER });
    expect(page.status).toBe(200);
    const section = resolvedSection(page.text);
    for (const id of wasEscalated) expect(section).toContain(`data-obligation="${id}"`);
    for (const id of neverEscalated) expect(section).not.toContain(id);
  });
});
