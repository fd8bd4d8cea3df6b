import { describe, expect, it } from "vitest";
import { redactUrl } from "../../src/redactUrl.js";

describe("redactUrl", () => {
  const cases: [string, string][] = [
    ["postgres://user:secret@host:5432/db", "postgres://user:***@host:5432/db"],
    ["postgres://:secret@host/db", "postgres://:***@host/db"],
    ["redis://:secret@host", "redis://:***@host"],
    ["rediss://default:secret@host:6380/0", "rediss://default:***@host:6380/0"],
    ["postgres://user:p@ss@host/db", "postgres://user:***@host/db"],
    ["postgres://user:pa/ss@host/db", "postgres://user:***@host/db"],
    ["postgresql://u:secret@h1:5432,h2:5432/db?target_session_attrs=read-write", "postgresql://u:***@h1:5432,h2:5432/db?target_session_attrs=read-write"],
    ["postgres://host/db?user=u&password=secret&sslmode=require", "postgres://host/db?user=u&password=***&sslmode=require"],
    ["postgres://postgres@127.0.0.1:5432/dispersal", "postgres://postgres@127.0.0.1:5432/dispersal"],
    ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379"],
    ["cluster 10.0.0.1:7000,10.0.0.2:7000", "cluster 10.0.0.1:7000,10.0.0.2:7000"],
  ];
  it.each(cases)("prints %s as %s", (url, printed) => {
    expect(redactUrl(url)).toBe(printed);
    expect(redactUrl(url)).not.toMatch(/secret|ss@|pa\//);
  });
});
