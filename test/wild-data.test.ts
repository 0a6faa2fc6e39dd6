/**
 * Data in the wild: tables without a key (duplicates included), cyclic and
 * deferrable foreign keys, tables with no copyable columns, partitioned
 * tables an agent creates, a whole column overwritten by one UPDATE, an
 * interrupted snapshot, and the same session diffed twice. Each went wrong
 * once: a keyless table's rollback said "0 rows restored" and left the
 * promotion's rows in place; a rollback of cyclic deferrable foreign keys
 * failed with "pending trigger events"; a table with no columns could not be
 * written; an agent's partitioned table never verified; `UPDATE … SET
 * title = 'x'` on every row was only a warning; `kill -9` of a capture left
 * its temporary directory forever; and two diffs of one session had two ids.
 *
 * Production is compared as a whole before and after promote + rollback:
 * every table's rows as a multiset and `pg_dump --schema-only` (outside the
 * `airlock` schema). The hazard rule for a whole-column overwrite is also
 * tested on its own, without a cluster, in test/hazards.test.ts.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffSession } from "../src/diff/run-diff.ts";
import { readDiff } from "../src/diff/store.ts";
import { type PgTarget, withClient } from "../src/pg/connect.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { promoteDiff } from "../src/promote/promote.ts";
import { listSnapshots, readManifest, removeStaleCaptures, snapshotsDir } from "../src/snapshot/store.ts";
import { agentConnection, createSession, destroySession, sessionAdminTarget } from "../src/staging/sessions.ts";
import { caught } from "./helpers/errors.ts";
import {
  SECRET,
  INHERITANCE,
  prod,
  project,
  prodQuery,
  productionState,
  agentSession,
  promote,
  rollback,
  multiset,
  cli,
  takeSnapshot,
  hangingCapture,
  startWildProduction,
  stopWildProduction,
} from "./helpers/wild-production.ts";

beforeAll(startWildProduction);
afterAll(stopWildProduction);

describe("a keyless table's changes are a danger, and rollback restores it exactly as a multiset", () => {
  it("inserts, duplicate rows and deletes in a table without a key: NO_KEY danger; promote + rollback gives back its previous multiset", async () => {
    const { session, agent, diff } = await agentSession(
      "keyless",
      `INSERT INTO tally VALUES (1, 'a'), (4, 'd'), (4, 'd');
       DELETE FROM tally WHERE ctid = (SELECT ctid FROM tally WHERE n = 3 LIMIT 1);
       DELETE FROM tally WHERE n = 2;`,
    );
    try {
      expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true });
      const t = diff.diff.tables.find((x) => x.name === "tally")!;
      expect(t.changes.map((c) => c.kind).sort()).toEqual(["delete", "delete", "insert", "insert", "insert"]);
      const hazard = diff.diff.hazards.find((h) => h.code === "NO_KEY");
      expect(hazard).toMatchObject({ severity: "danger", object: "public.tally", count: 5 });
      expect(hazard!.message).toMatch(/conflicts .* cannot be detected/);
      expect(hazard!.message).toMatch(/multiset/);
      // Two of six rows deleted is a bulk delete too.
      const refused = await caught(() => approveDiff(project, diff.id, { by: "reviewer", accept: ["BULK_DELETE"] }));
      expect([refused.code, refused.details]).toEqual(["AIRLOCK_HAZARD_NOT_ACCEPTED", { missing: ["NO_KEY"] }]);
      approveDiff(project, diff.id, { by: "reviewer", accept: ["NO_KEY", "BULK_DELETE"] });

      const before = await productionState();
      const p = await promote(diff.id);
      expect(await multiset(prod, "tally")).toEqual(await multiset(agent, "tally"));
      const r = await rollback(p.promotionId);
      expect(r.restored).toBe(5);
      expect(await productionState()).toEqual(before);
    } finally {
      await destroySession(project, session);
    }
  });

  it("refuses the rollback, changing nothing, when a row the promotion inserted into a keyless table is gone", async () => {
    const { session, diff } = await agentSession("keyless-gone", "INSERT INTO tally VALUES (7, 'g'), (7, 'g');");
    await destroySession(project, session);
    approveDiff(project, diff.id, { by: "reviewer", accept: ["NO_KEY"] });
    const before = await productionState();
    const p = await promote(diff.id);
    await prodQuery(prod, "DELETE FROM tally WHERE ctid = (SELECT ctid FROM tally WHERE n = 7 LIMIT 1)");
    const during = await productionState();
    const err = await caught(rollback(p.promotionId));
    expect([err.code, err.exitCode]).toEqual(["AIRLOCK_CONFLICT", 2]);
    expect(err.message).toContain("public.tally");
    expect(await productionState()).toEqual(during);
    await prodQuery(prod, "INSERT INTO tally VALUES (7, 'g')");
    await rollback(p.promotionId);
    expect(await productionState()).toEqual(before);
  });
});

describe("deferrable and cyclic foreign keys promote and roll back", () => {
  it("two new tables with cyclic deferred foreign keys, and rows added to and removed from an existing cycle: promote + rollback leaves production as it was", async () => {
    const { session, agent, diff } = await agentSession(
      "cycles",
      `CREATE TABLE cyc_a (id int PRIMARY KEY, b_id int NOT NULL);
       CREATE TABLE cyc_b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES cyc_a DEFERRABLE INITIALLY DEFERRED);
       ALTER TABLE cyc_a ADD CONSTRAINT cyc_a_b_fkey FOREIGN KEY (b_id) REFERENCES cyc_b DEFERRABLE INITIALLY DEFERRED;
       BEGIN;
       INSERT INTO cyc_a VALUES (1, 1), (2, 2);
       INSERT INTO cyc_b VALUES (1, 1), (2, 2);
       SET CONSTRAINTS ALL DEFERRED;
       INSERT INTO ring_a VALUES (3, 3);
       INSERT INTO ring_b VALUES (3, 3);
       DELETE FROM ring_a WHERE id = 1;
       DELETE FROM ring_b WHERE id = 1;
       COMMIT;`,
    );
    try {
      expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true });
      approveDiff(project, diff.id, { by: "reviewer" });
      const before = await productionState();
      const p = await promote(diff.id);
      expect(p.confirmed).toBe(true);
      for (const t of ["cyc_a", "cyc_b", "ring_a", "ring_b"]) expect(await multiset(prod, t), t).toEqual(await multiset(agent, t));
      await rollback(p.promotionId);
      expect(await productionState()).toEqual(before);
    } finally {
      await destroySession(project, session);
    }
  });
});

describe("tables with no copyable columns take inserts and deletes through verify, promote and rollback", () => {
  it("rows added to a table with no columns and removed from one with only a generated column: verified, promoted, rolled back", async () => {
    const { session, agent, diff } = await agentSession(
      "zero-columns",
      `INSERT INTO no_columns DEFAULT VALUES; INSERT INTO no_columns DEFAULT VALUES;
       DELETE FROM only_generated WHERE ctid = (SELECT min(ctid) FROM only_generated);
       DELETE FROM no_columns WHERE ctid = (SELECT min(ctid) FROM no_columns);`,
    );
    try {
      expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      approveDiff(project, diff.id, { by: "reviewer", accept: ["NO_KEY"] });
      const before = await productionState();
      const p = await promote(diff.id);
      expect(await prodQuery(prod, "SELECT (SELECT count(*)::int FROM no_columns) AS none, (SELECT count(*)::int FROM only_generated) AS generated")).toEqual([
        { none: 4, generated: 1 },
      ]);
      expect(await multiset(prod, "only_generated")).toEqual(await multiset(agent, "only_generated"));
      await rollback(p.promotionId);
      expect(await productionState()).toEqual(before);
    } finally {
      await destroySession(project, session);
    }
  });
});

describe("a partitioned table an agent creates verifies", () => {
  it("CREATE TABLE … PARTITION BY LIST with a primary key and two partitions, with rows: verified, promoted, rolled back", async () => {
    const { session, agent, diff } = await agentSession(
      "parted",
      `CREATE TABLE parted (id int, k int, label text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
       CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
       CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2, 4) PARTITION BY RANGE (id);
       CREATE TABLE parted_2_low PARTITION OF parted_2 FOR VALUES FROM (MINVALUE) TO (100);
       CREATE TABLE parted_2_high PARTITION OF parted_2 FOR VALUES FROM (100) TO (MAXVALUE);
       -- Made apart, with its own key, then attached: its key becomes the parent's key's partition.
       CREATE TABLE parted_3 (id int NOT NULL, k int NOT NULL, label text, CONSTRAINT parted_3_own_pkey PRIMARY KEY (id, k));
       ALTER TABLE parted ATTACH PARTITION parted_3 FOR VALUES IN (3);
       CREATE TABLE parted_rest PARTITION OF parted DEFAULT;
       CREATE INDEX parted_label_idx ON parted (label);
       CREATE UNIQUE INDEX parted_label_key ON parted (label, id, k);
       -- A foreign key to the partitioned table needs its key valid on every partition.
       CREATE TABLE parted_refs (id int PRIMARY KEY, parted_id int NOT NULL, parted_k int NOT NULL, FOREIGN KEY (parted_id, parted_k) REFERENCES parted);
       INSERT INTO parted VALUES (1, 1, 'one'), (2, 2, 'two'), (3, 1, 'three'), (150, 4, 'high'), (4, 3, 'attached'), (5, 9, 'rest');
       INSERT INTO parted_refs VALUES (1, 150, 4), (2, 4, 3);`,
    );
    try {
      expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      approveDiff(project, diff.id, { by: "reviewer" });
      const before = await productionState();
      const p = await promote(diff.id);
      for (const t of ["parted", "parted_2_high", "parted_3", "parted_refs"]) expect(await multiset(prod, t), t).toEqual(await multiset(agent, t));
      await rollback(p.promotionId);
      expect(await productionState()).toEqual(before);
    } finally {
      await destroySession(project, session);
    }
  });
});

describe("a whole-column overwrite is a danger", () => {
  it("UPDATE gallery_images SET title = 'x' on every row is BULK_OVERWRITE (danger), naming the column", async () => {
    const { session, diff } = await agentSession("overwrite", "UPDATE gallery_images SET title = 'x';");
    await destroySession(project, session);
    const h = diff.diff.hazards.find((x) => x.code === "BULK_OVERWRITE");
    expect(h).toMatchObject({ severity: "danger", object: "public.gallery_images", count: 40 });
    expect(h!.message).toContain("title");
    expect(diff.diff.hazards.map((x) => x.code)).not.toContain("BULK_UPDATE");
    expect((await caught(() => approveDiff(project, diff.id, { by: "reviewer" }))).code).toBe("AIRLOCK_HAZARD_NOT_ACCEPTED");
  });
});

describe("an interrupted snapshot leaves nothing behind that the next run does not clean up", () => {
  it("kill -9 mid-capture leaves a temporary directory naming its pid; `airlock snapshot ls` and the next capture remove it, and leave a live capture's alone", async () => {
    const dir = snapshotsDir(project.statePath());
    const child = await hangingCapture(dir);
    const temps = () => readdirSync(dir).filter((d) => d.startsWith(".tmp-"));
    const left = temps();
    expect(left).toHaveLength(1);
    expect(existsSync(join(dir, left[0]!, "capturing.json"))).toBe(true);
    child.kill("SIGKILL");
    await new Promise((res) => child.once("exit", res));
    expect(temps()).toEqual(left);

    // A capture still at work (this process) is left alone.
    const live = join(dir, ".tmp-snap-20260101-000000-aaaaaa");
    mkdirSync(live);
    writeFileSync(join(live, "capturing.json"), JSON.stringify({ pid: process.pid, host: hostname(), startedAt: new Date().toISOString() }));

    const ls = cli(["snapshot", "ls", "--json"]);
    expect(ls.status, ls.stderr).toBe(0);
    expect(JSON.parse(ls.stdout)).toHaveLength(listSnapshots(dir).length);
    expect(ls.stderr).toContain(`removed 1 temporary directory left by interrupted captures: ${left[0]}`);
    expect(temps()).toEqual([".tmp-snap-20260101-000000-aaaaaa"]);

    // Killed again; the next capture cleans it up.
    const again = await hangingCapture(dir);
    again.kill("SIGKILL");
    await new Promise((res) => again.once("exit", res));
    expect(temps()).toHaveLength(2);
    await takeSnapshot(dir);
    expect(temps()).toEqual([".tmp-snap-20260101-000000-aaaaaa"]);
    expect(removeStaleCaptures(dir)).toEqual([]);
  });
});

describe("diffing the same session twice gives the same diff id", () => {
  it("two diffSession runs on an unchanged session: one id, one directory, the first creation time kept, the approval kept", async () => {
    const s = await createSession(project, { name: "twice" });
    try {
      await withClient(agentConnection(project, s.id).target, { step: "test-agent", searchPath: "public" }, (c) =>
        c.query("UPDATE gallery_images SET title = 'renamed' WHERE id = 3"),
      );
      const first = await diffSession(project, s.id);
      approveDiff(project, first.id, { by: "reviewer" });
      await new Promise((res) => setTimeout(res, 20));
      const second = await diffSession(project, s.id);
      expect(second.id).toBe(first.id);
      expect(second.dir).toBe(first.dir);
      expect(readDiff(project, first.id).diff.createdAt).toBe(first.diff.createdAt);
      expect(second.diff.createdAt).toBe(first.diff.createdAt);
      // The approval of that content still holds: the dry run is allowed.
      expect((await promoteDiff(project, first.id, { to: prod, secret: SECRET, by: "tester", dryRun: true })).dryRun).toBe(true);

      // The creation time is outside the id but not outside the MAC: edited, the diff is refused; gone, too.
      const file = join(first.dir, "created.json");
      const created = readFileSync(file, "utf8");
      writeFileSync(file, created.replace(first.diff.createdAt, "2020-01-01T00:00:00.000Z"));
      expect((await caught(() => approveDiff(project, first.id, { by: "mallory" }))).code).toBe("AIRLOCK_DIFF_NOT_AUTHENTIC");
      rmSync(file);
      expect((await caught(() => readDiff(project, first.id))).code).toBe("AIRLOCK_DIFF_TAMPERED");
      writeFileSync(file, created);
      expect(readDiff(project, first.id).diff.createdAt).toBe(first.diff.createdAt);
    } finally {
      await destroySession(project, s.id);
    }
  });
});

describe("a table's inheritance children are not its rows", () => {
  // PostgreSQL reads and writes a table with its inheritance children (`SELECT … FROM par` sees kid's rows): every
  // read and write of a plain table is `ONLY` it. A partitioned table is still read and written through its parent
  // (the agent-created partitioned table above).
  const own = (target: PgTarget, table: string) => multiset(target, `ONLY ${table}`);
  let snapshotId: string;

  beforeAll(async () => {
    await prodQuery(prod, INHERITANCE);
    snapshotId = (await takeSnapshot()).id;
  });

  it("a parent and its child, keys shared: each snapshotted, diffed, promoted and rolled back with only its own rows", async () => {
    const m = readManifest(snapshotsDir(project.statePath()), snapshotId);
    expect(["inh_par", "inh_kid"].map((n) => m.tables.find((t) => t.name === n)?.rows)).toEqual([3, 3]);
    const { session, agent, diff } = await agentSession(
      "inherits",
      `INSERT INTO inh_kid VALUES (6, 600, 'six'), (3, 300, 'three');
       UPDATE ONLY inh_par SET x = 11 WHERE id = 1;
       DELETE FROM inh_kid WHERE id = 2;`,
    );
    try {
      const base = await sessionAdminTarget(project, session, "base");
      expect(await prodQuery(base, "SELECT (SELECT count(*)::int FROM ONLY inh_par) AS par, (SELECT count(*)::int FROM inh_kid) AS kid")).toEqual([
        { par: 3, kid: 3 },
      ]);
      expect(await own(base, "inh_par")).toEqual(await own(prod, "inh_par"));
      expect(await own(base, "inh_kid")).toEqual(await own(prod, "inh_kid"));

      expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      expect(diff.diff.schemaChanges).toEqual([]);
      expect(diff.diff.tables.map((t) => [t.name, t.rowsBefore, t.changes])).toEqual([
        [
          "inh_kid",
          3,
          [
            { kind: "delete", key: { id: "2" }, old: { id: "2", x: "200", y: "two" } },
            { kind: "insert", row: { id: "3", x: "300", y: "three" } },
            { kind: "insert", row: { id: "6", x: "600", y: "six" } },
          ],
        ],
        ["inh_par", 3, [{ kind: "update", key: { id: "1" }, old: { x: "10" }, new: { x: "11" } }]],
      ]);
      expect(readFileSync(join(diff.dir, "promote.sql"), "utf8")).toContain('UPDATE ONLY "public"."inh_par" SET "x" = \'11\'');

      approveDiff(project, diff.id, { by: "reviewer" });
      const before = await productionState();
      const p = await promote(diff.id);
      expect(p.confirmed).toBe(true);
      for (const t of ["inh_par", "inh_kid"]) expect(await own(prod, t), t).toEqual(await own(agent, t));
      await rollback(p.promotionId);
      expect(await productionState()).toEqual(before);
      expect(await own(prod, "inh_par")).toEqual(['{"x": 10, "id": 1}', '{"x": 20, "id": 2}', '{"x": 30, "id": 3}']);
    } finally {
      await destroySession(project, session);
    }
  });

  it("a keyless parent and child holding equal rows: the parent's own rows are deleted, inserted and rolled back", async () => {
    const { session, agent, diff } = await agentSession("inherits-keyless", "DELETE FROM ONLY inh_log WHERE n = 1; INSERT INTO inh_log VALUES (3, 'c');");
    try {
      expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true, mismatches: [], schemaDifference: [] });
      expect(diff.diff.tables.map((t) => [t.name, t.rowsBefore, t.changes])).toEqual([
        [
          "inh_log",
          2,
          [
            { kind: "delete", key: { n: "1", note: "a" }, old: { n: "1", note: "a" } },
            { kind: "insert", row: { n: "3", note: "c" } },
          ],
        ],
      ]);
      approveDiff(project, diff.id, { by: "reviewer", accept: ["NO_KEY"] });
      const before = await productionState();
      const p = await promote(diff.id);
      for (const t of ["inh_log", "inh_log_kid"]) expect(await own(prod, t), t).toEqual(await own(agent, t));
      const r = await rollback(p.promotionId);
      expect(r.restored).toBe(2);
      expect(await productionState()).toEqual(before);
      expect(await own(prod, "inh_log_kid")).toEqual(['{"n": 1, "note": "a", "extra": 9}', '{"n": 3, "note": "c", "extra": 9}']);
    } finally {
      await destroySession(project, session);
    }
  });
});

describe("conflicts with production are detected in partitioned tables too", () => {
  it("rows of a partitioned table production changed or deleted since the snapshot are conflicts, nothing is applied; once production is back, the promotion and its rollback go through", async () => {
    const { session, diff } = await agentSession(
      "partition-conflict",
      "UPDATE readings SET value = 11 WHERE id = 1; DELETE FROM readings WHERE id = 2; UPDATE readings SET value = 31 WHERE id = 3;",
    );
    await destroySession(project, session);
    expect(diff.diff.verification, JSON.stringify(diff.diff.verification)).toMatchObject({ verified: true });
    approveDiff(project, diff.id, { by: "reviewer", accept: diff.diff.hazards.filter((h) => h.severity === "danger").map((h) => h.code) });
    await prodQuery(prod, "UPDATE readings SET value = 99 WHERE id = 1; DELETE FROM readings WHERE id = 2");
    const during = await productionState();
    const err = await caught(promote(diff.id));
    expect([err.code, err.exitCode]).toEqual(["AIRLOCK_CONFLICT", 2]);
    const conflicts = (err.details as { conflicts: Array<{ table: string; key: string; kind: string }> }).conflicts;
    expect(conflicts.map((x) => [x.table, JSON.parse(x.key).id, x.kind]).sort()).toEqual([
      ["public.readings", "1", "changed"],
      ["public.readings", "2", "deleted"],
    ]);
    expect(await productionState()).toEqual(during);
    await prodQuery(prod, "UPDATE readings SET value = 10 WHERE id = 1; INSERT INTO readings VALUES (2, '2025-03-01', 20)");
    const before = await productionState();
    const p = await promote(diff.id);
    expect(await multiset(prod, "readings")).toEqual([`{"id": 1, "taken": "2024-03-01", "value": 11}`, `{"id": 3, "taken": "2025-04-01", "value": 31}`]);
    await rollback(p.promotionId);
    expect(await productionState()).toEqual(before);
  });
});
