import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../src/jobs/groupCommit.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A GroupCommit whose batches are recorded and finish when the test says so. */
function recorder(options: ConstructorParameters<typeof GroupCommit<number>>[0]) {
  const started: number[][] = [];
  const finishers: Array<() => void> = [];
  const group = new GroupCommit<number>(options, (batch) => {
    started.push(batch);
    return new Promise<void>((resolve) => finishers.push(resolve));
  });
  const finish = async (index: number) => {
    finishers[index]!();
    await sleep(0);
  };
  return { group, started, finish };
}

describe("group commit (jobs/groupCommit.ts)", () => {
  it("closes a batch when it is full, or when nothing joined it for the linger", async () => {
    const { group, started } = recorder({ maxSize: 3, lingerMs: 20, maxWaitMs: 1000 });
    for (const n of [1, 2, 3, 4]) group.add(n);
    expect(started).toEqual([[1, 2, 3]]);
    await sleep(5);
    expect(started).toHaveLength(1); // 4 is still gathering
    await sleep(40);
    expect(started).toEqual([[1, 2, 3], [4]]);
  });

  it("closes a batch that keeps being joined at its maximum wait", async () => {
    const { group, started } = recorder({ maxSize: 1000, lingerMs: 15, maxWaitMs: 60 });
    const begun = Date.now();
    for (let n = 0; started.length === 0 && Date.now() - begun < 2000; n++) {
      group.add(n);
      await sleep(5);
    }
    expect(started).toHaveLength(1);
    expect(Date.now() - begun).toBeLessThan(500);
    expect(started[0]!.length).toBeGreaterThan(2);
  });

  it("with maxInFlight, the next batch gathers while one runs and starts the moment it ends", async () => {
    const { group, started, finish } = recorder({ maxSize: 2, lingerMs: 5, maxWaitMs: 50, maxInFlight: 1 });
    for (const n of [1, 2, 3, 4, 5]) group.add(n);
    await sleep(30);
    expect(started).toEqual([[1, 2]]); // [3, 4] and [5] are due but wait for the slot
    await finish(0);
    expect(started).toEqual([[1, 2], [3, 4]]);
    await finish(1);
    expect(started).toEqual([[1, 2], [3, 4], [5]]);
  });

  it("a batch that ends while the next one is still gathering leaves that one's timer running", async () => {
    const { group, started, finish } = recorder({ maxSize: 10, lingerMs: 20, maxWaitMs: 100, maxInFlight: 1 });
    group.add(1);
    await sleep(40);
    expect(started).toEqual([[1]]);
    group.add(2); // gathering, not due yet
    await finish(0); // the running batch ends: [2] must still close by its linger, no other item will come
    await sleep(60);
    expect(started).toEqual([[1], [2]]);
  });

  it("drained() starts what is gathering and resolves when every batch has finished", async () => {
    const { group, started, finish } = recorder({ maxSize: 2, lingerMs: 1000, maxWaitMs: 1000, maxInFlight: 1 });
    for (const n of [1, 2, 3]) group.add(n);
    let drained = false;
    const done = group.drained().then(() => (drained = true));
    await sleep(5);
    expect(started).toEqual([[1, 2]]);
    await finish(0);
    expect(started).toEqual([[1, 2], [3]]);
    expect(drained).toBe(false);
    await finish(1);
    await done;
    expect(drained).toBe(true);
  });
});
