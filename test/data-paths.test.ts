/**
 * Exact data paths: every place Airlock reads COPY output must give back
 * the bytes production holds, however the stream is cut into chunks (a
 * multibyte character split between two chunks once became U+FFFD, which
 * made the diff see updates nobody made and promotion see conflicts nobody
 * caused), and tables with no copyable columns must survive every step.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { parseConfig } from "../src/config/config.ts";
import { type Project } from "../src/config/load.ts";
import { canonicalJson, sha256Hex } from "../src/format/canonical.ts";
import { computeDiff } from "../src/diff/diff.ts";
import { diffSession } from "../src/diff/run-diff.ts";
import { writeDiff } from "../src/diff/store.ts";
import type { RowChange } from "../src/diff/types.ts";
import { type PgTarget, withClient } from "../src/pg/connect.ts";
import { CopyLineSplitter } from "../src/pg/copy-lines.ts";
import { copyText, copyValue } from "../src/pg/copy-text.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { promoteDiff } from "../src/promote/promote.ts";
import { agentConnection, createSession, destroySession } from "../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const SECRET = "data-paths-test-secret-0123456789";
/** Rows of the multibyte table: enough that both sides of the diff span hundreds of COPY chunks. */
const ROWS = 200_000;
let prodCluster: TestCluster;
let prod: PgTarget;
let project: Project;

async function rows(target: PgTarget, sql: string): Promise<Array<Record<string, unknown>>> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql)).rows);
}

function splitAll(splitter: CopyLineSplitter, chunks: readonly Buffer[]): string[] {
  return [...chunks.flatMap((c) => splitter.push(c)), ...splitter.end()];
}

const timings: string[] = [];
async function timed<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await fn();
  } finally {
    timings.push(`${what}: ${((Date.now() - started) / 1000).toFixed(2)} s`);
  }
}

describe("COPY lines are decoded whole, however the stream is chunked", () => {
  const lines = ["1\tnaïve — €5\t東京", "", "2\t😀🇯🇵 𝄞\t\\N", "3\ta\\tb\\nc\\\\d\t€"];
  const bytes = Buffer.from(`${lines.join("\n")}\n`, "utf8");

  it("gives the same lines for every split of the stream into two chunks", () => {
    for (let at = 0; at <= bytes.length; at++) {
      expect(splitAll(new CopyLineSplitter(), [bytes.subarray(0, at), bytes.subarray(at)]), `split at byte ${at}`).toEqual(lines);
    }
  });

  it("gives the same lines when every byte is its own chunk, and keeps an unterminated last line", () => {
    expect(
      splitAll(
        new CopyLineSplitter(),
        [...bytes].map((b) => Buffer.from([b])),
      ),
    ).toEqual(lines);
    const unterminated = Buffer.from("a\nb€", "utf8");
    expect(splitAll(new CopyLineSplitter(), [unterminated.subarray(0, 4), unterminated.subarray(4)])).toEqual(["a", "b€"]);
  });

  it("reads COPY's byte escapes as UTF-8 bytes, and writes back what it read", () => {
    expect(copyValue("\\342\\202\\254 \\xe2\\x82\\xac")).toBe("€ €");
    for (const v of ["", "東京\t—\n€\\😀", "\\N"]) expect(copyValue(copyText(v))).toBe(v);
    expect(copyValue("\\N")).toBeNull();
  });
});

beforeAll(async () => {
  const started = Date.now();
  prodCluster = await startTestCluster("data-paths-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    // Dense multibyte text (2-, 3- and 4-byte characters); every 200th row long, so the 1,000 rows the agent
    // touches also span many chunks when promotion reads them back from production.
    await c.query("CREATE TABLE intl (id int PRIMARY KEY, label text NOT NULL, note text)");
    await c.query(
      `INSERT INTO intl SELECT i, 'r' || i || ' — €' || (i % 97), repeat('東京—€😀ß ', CASE WHEN i % 200 = 0 THEN 60 ELSE 3 END) || i
         FROM generate_series(1, ${ROWS}) i`,
    );
    // Tables with nothing to COPY: no columns at all, and only a generated column.
    await c.query("CREATE TABLE no_columns ()");
    await c.query("INSERT INTO no_columns SELECT FROM generate_series(1, 3)");
    await c.query("CREATE TABLE only_generated (g text GENERATED ALWAYS AS ('computed') STORED)");
    await c.query("INSERT INTO only_generated SELECT FROM generate_series(1, 2)");
    // Empty strings in a masked column stay empty (and NULLs NULL).
    await c.query("CREATE TABLE contacts (id int PRIMARY KEY, email text)");
    await c.query("INSERT INTO contacts VALUES (1, ''), (2, NULL), (3, 'ada@lovelace.org')");
  });
  project = await createTestProject("data-paths-project", `export default { promote: { lockTimeout: "2s", statementTimeout: "60s" } };\n`);
  const rules = parseConfig({
    masking: {
      rules: { ...DEMO_MASKING_RULES, "public.intl.label": "keep", "public.intl.note": "keep", "public.contacts.email": { faker: "email", domain: "email" } },
    },
  }).masking.rules;
  await timed("capture", () => captureInto(project, prod, SECRET, rules));
  timings.push(`set-up (cluster, demo, ${ROWS} rows, capture): ${((Date.now() - started) / 1000).toFixed(2)} s`);
});

afterAll(async () => {
  console.log(`data-paths timings:\n  ${timings.join("\n  ")}`);
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("a diff and its promotion read exactly what production holds", () => {
  it(`diffs a 1,000-row UPDATE on ${ROWS} multibyte rows to exactly 1,000 verified updates, twice with one id, and dry-runs without conflicts ten times`, async () => {
    const session = await timed("session", () => createSession(project, { name: "multibyte" }));
    try {
      const agent = agentConnection(project, session.id).target;
      await rows(agent, "UPDATE intl SET note = note || ' ✓ 東京' WHERE id % 200 = 0");
      const now = new Date("2026-01-01T00:00:00Z");
      const first = await timed("diff 1", () => computeDiff(project, session.id, { now }));
      const second = await timed("diff 2", () => computeDiff(project, session.id, { now }));
      expect(first.verification, JSON.stringify(first.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      expect(first.summary).toEqual({ inserts: 0, updates: 1_000, deletes: 0, ddl: 0 });
      expect(first.tables.map((t) => `${t.schema}.${t.name}`)).toEqual(["public.intl"]);

      // Every old and new value is the exact text of production and of work: no U+FFFD, no spurious column.
      const before = new Map((await rows(prod, "SELECT id::text AS id, note FROM intl WHERE id % 200 = 0")).map((r) => [r.id as string, r.note as string]));
      const after = new Map((await rows(agent, "SELECT id::text AS id, note FROM intl WHERE id % 200 = 0")).map((r) => [r.id as string, r.note as string]));
      const changes = first.tables[0]!.changes as ReadonlyArray<Extract<RowChange, { kind: "update" }>>;
      expect(changes).toHaveLength(1_000);
      for (const ch of changes) {
        const id = ch.key.id!;
        expect(ch.old, id).toEqual({ note: before.get(id) });
        expect(ch.new, id).toEqual({ note: after.get(id) });
      }
      expect(JSON.stringify(first)).not.toContain("\uFFFD");

      // A diff's id is the sha256 of its canonical JSON: the same session diffed twice is the same diff.
      expect(sha256Hex(canonicalJson(second))).toBe(sha256Hex(canonicalJson(first)));
      const id = writeDiff(project, first, SECRET).id;
      expect(writeDiff(project, second, SECRET).id).toBe(id);
      // 1,000 rows with the same column changed is a bulk overwrite.
      expect(first.hazards.map((h) => `${h.severity}:${h.code}`)).toEqual(["danger:BULK_OVERWRITE"]);
      approveDiff(project, id, { by: "reviewer", secret: SECRET, accept: ["BULK_OVERWRITE"] });
      for (let run = 1; run <= 10; run++) {
        const r = await timed(`promote --dry-run ${run}`, () => promoteDiff(project, id, { to: prod, secret: SECRET, by: "tester", dryRun: true }));
        expect(r.dryRun).toBe(true);
      }
      // Nothing reached production.
      expect(await rows(prod, "SELECT count(*)::int AS n FROM intl WHERE note LIKE '%✓%'")).toEqual([{ n: 0 }]);
    } finally {
      await destroySession(project, session.id);
    }
  });
});

describe("tables with no copyable columns", () => {
  it("are snapshotted and restored with their row counts; a diff of a change elsewhere is verified and promotes", async () => {
    const session = await createSession(project, { name: "no-columns" });
    try {
      const agent = agentConnection(project, session.id).target;
      expect(
        await rows(
          agent,
          "SELECT (SELECT count(*)::int FROM no_columns) AS none, (SELECT count(*)::int FROM only_generated) AS generated, (SELECT string_agg(DISTINCT g, ',') FROM only_generated) AS g",
        ),
      ).toEqual([{ none: 3, generated: 2, g: "computed" }]);
      // The masked column kept its empty string and its NULL, and masked the address.
      const contacts = await rows(agent, "SELECT id, email FROM contacts ORDER BY id");
      expect(contacts.slice(0, 2)).toEqual([
        { id: 1, email: "" },
        { id: 2, email: null },
      ]);
      expect(contacts[2]!.email).toMatch(/@example\.com$/);

      await rows(agent, "UPDATE bookings SET status = 'cancelled' WHERE id = 21");
      const r = await diffSession(project, session.id, { secret: SECRET });
      expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      expect(r.diff.tables.map((t) => `${t.schema}.${t.name}`)).toEqual(["public.bookings"]);
      approveDiff(project, r.id, { by: "reviewer", secret: SECRET });
      const p = await promoteDiff(project, r.id, { to: prod, secret: SECRET, by: "tester", dryRun: true });
      expect(p.dryRun).toBe(true);
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("count in the diff: rows the agent adds to a table with no columns are an insert each", async () => {
    const session = await createSession(project, { name: "no-columns-rows" });
    try {
      const agent = agentConnection(project, session.id).target;
      await rows(
        agent,
        "INSERT INTO no_columns DEFAULT VALUES; INSERT INTO no_columns DEFAULT VALUES; DELETE FROM only_generated WHERE ctid = (SELECT min(ctid) FROM only_generated)",
      );
      // Before, these tables were invisible to the diff and to its verification: the agent's rows were lost
      // from a diff that still said "verified". (Their replay, promotion and rollback: test/wild-data.test.ts.)
      const d = await computeDiff(project, session.id);
      const summary = Object.fromEntries(d.tables.map((t) => [`${t.schema}.${t.name}`, t.changes.map((c) => c.kind)]));
      expect(summary).toEqual({ "public.no_columns": ["insert", "insert"], "public.only_generated": ["delete"] });
      expect(d.tables.find((t) => t.name === "no_columns")!.rowsBefore).toBe(3);
    } finally {
      await destroySession(project, session.id);
    }
  });
});
