/**
 * The verified promotion diff against real clusters: every fixture case in
 * test/fixtures/diff/<case>/ (the agent's SQL, and expected.json: the exact
 * counts, row changes per table, schema changes and hazards its diff holds)
 * must replay to a database identical to work and be verified.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { parseConfig } from "../src/config/config.ts";
import { type Project } from "../src/config/load.ts";
import { canonicalJson, sha256Hex } from "../src/format/canonical.ts";
import { countsText, diffSession } from "../src/diff/run-diff.ts";
import { readDiff } from "../src/diff/store.ts";
import type { RowChange, TableChanges } from "../src/diff/types.ts";
import { type PgTarget, withClient } from "../src/pg/connect.ts";
import { agentConnection, createSession, destroySession, sessionAdminTarget } from "../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const FIXTURES = resolve("test/fixtures/diff");
const BIN = resolve("bin/airlock.mjs");
let prodCluster: TestCluster;
let prod: PgTarget;
let project: Project;

/** Everything a fixture's diff holds, exactly: test/fixtures/diff/<case>/expected.json. */
interface Expected {
  readonly summary: { readonly inserts: number; readonly updates: number; readonly deletes: number; readonly ddl: number };
  /** Every table with row changes, and how many of each kind (a kind left out: none). */
  readonly tables: Readonly<Record<string, { readonly inserts?: number; readonly updates?: number; readonly deletes?: number }>>;
  /** The ids of the schema changes, in the order their SQL runs. */
  readonly schemaChanges: readonly string[];
  /** Every hazard, as severity:CODE:object, sorted. */
  readonly hazards: readonly string[];
}

/** A fixture's expected.json; a key missing or unknown fails, so no fixture can say less than it seems. */
function readExpected(name: string): Expected {
  const expected = JSON.parse(readFileSync(join(FIXTURES, name, "expected.json"), "utf8")) as Expected;
  expect(Object.keys(expected).sort(), `${name}/expected.json`).toEqual(["hazards", "schemaChanges", "summary", "tables"]);
  return expected;
}

/** How many rows of each kind a table's changes hold, kinds without any left out. */
function changeCounts(t: TableChanges): Expected["tables"][string] {
  const count = (kind: RowChange["kind"]) => t.changes.filter((c) => c.kind === kind).length;
  const counts = { inserts: count("insert"), updates: count("update"), deletes: count("delete") };
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
}

async function asAgent(session: string, sql: string): Promise<void> {
  await withClient(agentConnection(project, session).target, { step: "test-agent", searchPath: "public" }, (c) => c.query(sql));
}

beforeAll(async () => {
  // diff authenticates what it writes with AIRLOCK_SECRET, the one the snapshot is taken with.
  process.env.AIRLOCK_SECRET = "diff-test-secret-0123456789";
  prodCluster = await startTestCluster("diff-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    // Shapes the demo lacks: a composite primary key and bytea.
    await c.query("CREATE TABLE room_rates (room text, day date, price numeric(8,2) NOT NULL, PRIMARY KEY (room, day))");
    await c.query("INSERT INTO room_rates VALUES ('101', '2024-08-01', 150.00), ('101', '2024-08-02', 155.50), ('102', '2024-08-01', 99.90)");
    await c.query("CREATE TABLE attachments (id int PRIMARY KEY, data bytea, note text)");
    await c.query("INSERT INTO attachments VALUES (1, '\\x0102', 'a'), (2, NULL, 'b')");
  });
  project = await createTestProject("diff-project");
  const rules = parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules;
  await captureInto(project, prod, "diff-test-secret-0123456789", rules);
});

afterAll(async () => {
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("every kind of change replays to work and is verified", () => {
  const cases = readdirSync(FIXTURES).sort();
  it("has the fixture cases", () => expect(cases.length).toBeGreaterThanOrEqual(20));
  for (const name of cases) {
    it(name, async () => {
      const sql = readFileSync(join(FIXTURES, name, "agent.sql"), "utf8");
      const expected = readExpected(name);
      const session = await createSession(project, { name: `case-${name}`.slice(0, 40).replace(/-+$/, "") });
      try {
        await asAgent(session.id, sql);
        const r = await diffSession(project, session.id);
        expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
        expect(r.diff.summary, "summary").toEqual(expected.summary);
        expect(Object.fromEntries(r.diff.tables.map((t) => [`${t.schema}.${t.name}`, changeCounts(t)])), "tables").toEqual(expected.tables);
        expect(
          r.diff.schemaChanges.map((c) => c.id),
          "schema changes",
        ).toEqual(expected.schemaChanges);
        expect(r.diff.hazards.map((h) => `${h.severity}:${h.code}:${h.object}`).sort(), "hazards").toEqual(expected.hazards);
        // The id is the sha256 of the canonical diff.json.
        expect(sha256Hex(readFileSync(join(r.dir, "diff.json"), "utf8"))).toBe(r.id);
        expect(readDiff(project, r.id).diff).toEqual(JSON.parse(canonicalJson(r.diff)));
      } finally {
        await destroySession(project, session.id);
      }
    });
  }
});

describe("the diff artifact", () => {
  it("refuses a diff.json changed by one byte in every later read", async () => {
    const session = await createSession(project, { name: "tamper" });
    try {
      await asAgent(session.id, "UPDATE room_rates SET price = 1.00 WHERE room = '102'");
      const r = await diffSession(project, session.id);
      const file = join(r.dir, "diff.json");
      const text = readFileSync(file, "utf8");
      writeFileSync(file, text.replace('"1.00"', '"2.00"'));
      expect(() => readDiff(project, r.id)).toThrow(expect.objectContaining({ code: "AIRLOCK_DIFF_TAMPERED", exitCode: 2 }));
      writeFileSync(file, text);
      expect(readDiff(project, r.id).id).toBe(r.id);
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("a diff killed before it dropped its roles does not spoil the session's next diff", async () => {
    const session = await createSession(project, { name: "killed-diff" });
    try {
      await asAgent(session.id, "UPDATE room_rates SET price = price + 1 WHERE room = '102'");
      const work = await sessionAdminTarget(project, session.id, "work");
      // A real `airlock diff`, killed (SIGKILL: no cleanup runs) once its reader may connect to work.
      const child = spawn(process.execPath, [BIN, "diff", session.id], { cwd: project.dir, stdio: "ignore" });
      let granted = false;
      for (let i = 0; i < 600 && !granted; i++) {
        const acl = await withClient(
          work,
          { step: "test" },
          async (c) => (await c.query("SELECT datacl::text AS acl FROM pg_database WHERE datname = current_database()")).rows[0].acl,
        );
        granted = /airlock_reader_[0-9a-f]{8}=c/.test(String(acl));
        if (!granted) await new Promise((r) => setTimeout(r, 20));
      }
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      expect(granted).toBe(true);
      const r = await diffSession(project, session.id);
      expect(r.diff.verification.verified, JSON.stringify(r.diff.verification)).toBe(true);
      expect(r.diff.summary).toMatchObject({ updates: 1, ddl: 0 });
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("diffs an empty session to an empty, verified diff, exits 0 and prints the id", async () => {
    const session = await createSession(project, { name: "empty" });
    try {
      const r = spawnSync(process.execPath, [BIN, "diff", session.id, "--json"], { cwd: project.dir, encoding: "utf8", timeout: 120_000 });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out).toMatchObject({ verified: true, summary: { inserts: 0, updates: 0, deletes: 0, ddl: 0 }, hazards: [] });
      expect(out.id).toMatch(/^[0-9a-f]{64}$/);
      const text = spawnSync(process.execPath, [BIN, "diff", session.id], { cwd: project.dir, encoding: "utf8", timeout: 120_000 });
      expect(text.status).toBe(0);
      // The same session diffed again is the same diff (invariant 14).
      expect(text.stdout).toMatch(new RegExp(`^diff ${out.id} for session empty: 0 inserts, 0 updates, 0 deletes, 0 schema statements`, "m"));
      expect(text.stdout).toContain("verified: replaying");
      expect(existsSync(join(out.dir, "review.html"))).toBe(true);
      // The review page as a URL any OS's browser opens.
      expect(text.stdout).toContain(`review: ${pathToFileURL(join(out.dir, "review.html")).href}`);
      expect(countsText({ inserts: 1, updates: 2, deletes: 1, ddl: 1 })).toBe("1 insert, 2 updates, 1 delete, 1 schema statement");
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("flags the incident: bulk delete (danger), large insert, and a masked value written back", async () => {
    const session = await createSession(project, { name: "incident" });
    try {
      const fakeEmail = await withClient(
        agentConnection(project, session.id).target,
        { step: "test", searchPath: "public" },
        async (c) => (await c.query("SELECT email FROM guests WHERE id = 4")).rows[0].email as string,
      );
      await asAgent(
        session.id,
        `DELETE FROM gallery_images WHERE id >= 439;
         INSERT INTO gallery_images (title, url, category, published) SELECT 'Imported ' || g, 'file:///tmp/img' || g || '.jpg', 'imported', true FROM generate_series(1, 282) g;
         UPDATE guests SET email = '${fakeEmail.replace(/'/g, "''")}', updated_at = '2024-07-01 00:00:00+00' WHERE id = 5;`.replace(
          /UPDATE guests SET email = '[^']*'/,
          `UPDATE guests SET email = (SELECT email FROM guests WHERE id = 4) || ''`,
        ),
      ).catch(async () => {
        // guests.email is unique: copy another guest's fake email into a new guest instead.
        await asAgent(
          session.id,
          `DELETE FROM gallery_images WHERE id >= 439;
           INSERT INTO gallery_images (title, url, category, published) SELECT 'Imported ' || g, 'file:///tmp/img' || g || '.jpg', 'imported', true FROM generate_series(1, 282) g;
           UPDATE guests SET full_name = (SELECT full_name FROM guests WHERE id = 4), updated_at = '2024-07-01 00:00:00+00' WHERE id = 5;`,
        );
      });
      const r = await diffSession(project, session.id);
      expect(r.diff.verification.verified).toBe(true);
      const codes = r.diff.hazards.map((h) => `${h.severity}:${h.code}:${h.object}`);
      expect(codes).toContain("danger:BULK_DELETE:public.gallery_images");
      expect(codes).toContain("warn:LARGE_INSERT:public.gallery_images");
      expect(codes).toContain("danger:MASKED_VALUE:public.guests");
      expect(r.diff.hazards[0]!.severity).toBe("danger");
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("agent code never fires while the diff is replayed: a stamping trigger comes after the data, as a danger", async () => {
    const session = await createSession(project, { name: "unreplayable" });
    try {
      // A trigger the agent added stamps rows with the clock. Created after the data, it does not fire during
      // the replay (nor during promotion), so the rows the agent ended with are reproduced exactly.
      await asAgent(
        session.id,
        `CREATE TABLE stamped (id int PRIMARY KEY, at timestamptz);
         CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := clock_timestamp(); RETURN NEW; END $$;
         CREATE TRIGGER stamped_at BEFORE INSERT ON stamped FOR EACH ROW EXECUTE FUNCTION stamp();
         INSERT INTO stamped (id) VALUES (1), (2);`,
      );
      const r = await diffSession(project, session.id);
      expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      expect(r.diff.hazards.map((h) => `${h.severity}:${h.code}:${h.object}`)).toEqual(
        expect.arrayContaining(["danger:TRIGGER:trigger public.stamped.stamped_at", "danger:FUNCTION:function public.stamp()"]),
      );
      const trigger = r.diff.schemaChanges.find((c) => c.id === "trigger public.stamped.stamped_at")!;
      expect(trigger.sql).toEqual([]);
      expect(trigger.afterData.join("\n")).toContain("CREATE TRIGGER stamped_at");
    } finally {
      await destroySession(project, session.id);
    }
  });
});
