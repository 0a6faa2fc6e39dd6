/**
 * The catalog model against real clusters: a production database with an
 * object of every kind survives snapshot and restore unchanged (through the
 * role mapping), nothing the agent puts in work escapes the diff, code and
 * privilege changes are danger hazards that must be accepted by name, and
 * replay verification compares the whole catalog, not just rows.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareCatalogs } from "../src/catalog/compare.ts";
import { readCatalog } from "../src/catalog/read.ts";
import type { Project } from "../src/config/load.ts";
import { verifyDiff } from "../src/diff/diff.ts";
import { diffSession } from "../src/diff/run-diff.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { type PgTarget, withClient } from "../src/pg/connect.ts";
import { readManifest, readSnapshotCatalog, snapshotDir, snapshotsDir } from "../src/snapshot/store.ts";
import { agentConnection, createSession, destroySession, sessionAdminTarget } from "../src/staging/sessions.ts";
import { caught } from "./helpers/errors.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const BIN = resolve("bin/airlock.mjs");
const ZOO = readFileSync(resolve("test/fixtures/catalog/zoo.sql"), "utf8");
let prodCluster: TestCluster;
let prod: PgTarget;
let project: Project;
let snapshotId: string;

async function asAgent(session: string, sql: string): Promise<void> {
  await withClient(agentConnection(project, session).target, { step: "test-agent", searchPath: "public" }, (c) => c.query(sql));
}

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: project.dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  // diff and approve authenticate what they write with AIRLOCK_SECRET, the one the snapshot is taken with.
  process.env.AIRLOCK_SECRET = "catalog-test-secret-0123456789";
  prodCluster = await startTestCluster("catalog-prod");
  prod = await prodCluster.createDatabase("zoo");
  await withClient(prod, { step: "test", searchPath: "public" }, (c) => c.query(ZOO));
  project = await createTestProject("catalog-project");
  const manifest = await captureInto(project, prod, "catalog-test-secret-0123456789");
  snapshotId = manifest.id;
}, 120_000);

afterAll(async () => {
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("a restored snapshot has production's catalog", () => {
  it("restoring a snapshot reproduces production's catalog model, grants to a production-only role included", async () => {
    const manifest = readManifest(snapshotsDir(project.statePath()), snapshotId);
    const expected = readSnapshotCatalog(snapshotDir(snapshotsDir(project.statePath()), snapshotId), manifest)!;
    // Production's model holds an object of every kind the model reads.
    const kinds = new Set(Object.values(expected.objects).map((o) => o.kind));
    for (const k of [
      "schema",
      "extension",
      "type",
      "sequence",
      "function",
      "table",
      "column",
      "constraint",
      "index",
      "view",
      "matview",
      "trigger",
      "rule",
      "policy",
      "cast",
      "operator",
      "event_trigger",
      "default_acl",
      "setting",
      "database",
    ]) {
      expect(kinds, k).toContain(k);
    }
    expect(manifest.catalog?.roles).toContain("zoo_reporting");
    const session = await createSession(project, { name: "restored" });
    try {
      const base = await sessionAdminTarget(project, session.id, "base");
      const actual = await withClient(base, { step: "test", searchPath: "public" }, (c) =>
        readCatalog(c, { owners: new Set([base.user, ...(manifest.catalog?.owners ?? [])]) }),
      );
      const differences = compareCatalogs(actual, expected, {
        sequenceValues: true,
        ignore: (o, p) => (o.kind === "database" && p !== "comment") || (o.kind === "setting" && o.scope === "role"),
      });
      expect(differences).toEqual([]);
      expect(actual.objects["table zoo.species"]?.acl).toContain("zoo_reporting:SELECT");
      expect(actual.objects["column billing.accounts.label"]?.acl).toContain("zoo_reporting:SELECT");
      expect(actual.objects["matview zoo.species_counts"]).toMatchObject({ populated: true });
      expect(actual.objects["matview zoo.visit_totals"]).toMatchObject({ populated: false });
      expect(actual.objects["trigger zoo.animals.animals_stamp_updated_at"]).toMatchObject({ enabled: "D" });
      // The role exists in staging only as a placeholder nobody can log in as.
      const role = await withClient(base, { step: "test", searchPath: "public" }, (c) =>
        c.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'zoo_reporting'"),
      );
      expect(role.rows).toEqual([{ rolcanlogin: false }]);
    } finally {
      await destroySession(project, session.id);
    }
  });
});

describe("nothing in work escapes the diff", () => {
  it("an agent's RULE is in the diff, with its danger hazard", async () => {
    const session = await createSession(project, { name: "rule" });
    try {
      await asAgent(session.id, "CREATE RULE wipe_feeding AS ON INSERT TO zoo.tickets DO ALSO DELETE FROM zoo.feeding_log");
      const r = await diffSession(project, session.id);
      expect(r.diff.verification.verified).toBe(true);
      const change = r.diff.schemaChanges.find((c) => c.id === "rule zoo.tickets.wipe_feeding");
      expect(change?.action).toBe("create");
      expect([...change!.sql, ...change!.afterData].join("\n")).toContain("DELETE FROM zoo.feeding_log");
      const hazard = r.diff.hazards.find((h) => h.code === "RULE");
      expect(hazard).toMatchObject({ severity: "danger", object: "rule zoo.tickets.wipe_feeding" });
      expect(hazard?.definition).toContain("DELETE FROM zoo.feeding_log");
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("code, privilege and setting changes are danger hazards, and approval refuses until each is accepted by name", async () => {
    const session = await createSession(project, { name: "dangers" });
    try {
      const work = agentConnection(project, session.id).target.database;
      await asAgent(
        session.id,
        `CREATE FUNCTION zoo.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.label := NEW.label || '!'; RETURN NEW; END $$;
         CREATE TRIGGER touch BEFORE UPDATE ON zoo.species FOR EACH ROW EXECUTE FUNCTION zoo.touch();
         CREATE FUNCTION public.run_sql(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN EXECUTE q; END $$;
         GRANT CONNECT ON DATABASE ${work} TO PUBLIC;
         GRANT SELECT ON ALL TABLES IN SCHEMA zoo TO PUBLIC;
         ALTER DATABASE ${work} SET search_path = zoo, public;`,
      );
      const r = await diffSession(project, session.id);
      expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true });
      const codes = new Set(r.diff.hazards.filter((h) => h.severity === "danger").map((h) => h.code));
      for (const code of ["FUNCTION", "TRIGGER", "SECURITY_DEFINER", "GRANT_PUBLIC", "DATABASE_SETTING"]) expect(codes, code).toContain(code);
      expect(r.diff.hazards.find((h) => h.code === "SECURITY_DEFINER")?.definition).toContain("EXECUTE q");
      expect(r.diff.hazards.find((h) => h.code === "DATABASE_SETTING")?.message).toContain("search_path");
      expect(r.diff.hazards.some((h) => h.code === "GRANT_PUBLIC" && h.object === "database")).toBe(true);
      // Danger first in the terminal, the review files and the hazard list.
      expect(r.diff.hazards[0]!.severity).toBe("danger");
      expect(readFileSync(resolve(r.dir, "review.md"), "utf8")).toContain("EXECUTE q");
      // Approving without accepting each code by name is refused with exit 2, at the library and at the CLI.
      const missing = await caught(() => approveDiff(project, r.id, { by: "test", accept: ["FUNCTION", "TRIGGER"] }));
      expect(missing).toMatchObject({ code: "AIRLOCK_HAZARD_NOT_ACCEPTED", exitCode: 2 });
      expect(missing.details).toMatchObject({ missing: expect.arrayContaining(["SECURITY_DEFINER", "GRANT_PUBLIC", "DATABASE_SETTING"]) });
      const refused = cli("approve", r.id, "--by", "test", "--yes", "--accept", "FUNCTION", "TRIGGER", "GRANT_PUBLIC", "DATABASE_SETTING");
      expect(refused.status, refused.stderr).toBe(2);
      expect(refused.stderr).toContain("SECURITY_DEFINER");
      const accepted = cli("approve", r.id, "--by", "test", "--yes", "--accept", ...[...codes]);
      expect(accepted.status, accepted.stderr).toBe(0);
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("agent-written code never runs with Airlock's privileges: an agent's role setting is a danger, and its replay leaves the staging superuser untouched", async () => {
    const session = await createSession(project, { name: "role-setting" });
    try {
      await asAgent(session.id, "ALTER ROLE CURRENT_USER SET work_mem = '7MB'");
      const r = await diffSession(project, session.id);
      expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true });
      expect(r.diff.hazards.find((h) => h.code === "ROLE_SETTING")).toMatchObject({ severity: "danger" });
      const base = await sessionAdminTarget(project, session.id, "base");
      const settings = await withClient(base, { step: "test", searchPath: "public" }, (c) =>
        c.query("SELECT s.setconfig FROM pg_db_role_setting s WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)"),
      );
      expect(settings.rows).toEqual([]);
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("replay verification compares the whole catalog: a change left out of the diff makes it NOT verified, naming the object", async () => {
    const session = await createSession(project, { name: "unseen" });
    try {
      await asAgent(
        session.id,
        `CREATE OR REPLACE VIEW zoo.arctic_species AS SELECT id, label, animal_count FROM zoo.species_overview WHERE habitat = 'jungle';
         GRANT SELECT ON zoo.enclosures TO zoo_reporting;
         ALTER TABLE zoo.species DISABLE TRIGGER species_stamp_updated_at;
         REFRESH MATERIALIZED VIEW zoo.visit_totals;`,
      );
      const r = await diffSession(project, session.id);
      expect(r.diff.verification, JSON.stringify(r.diff.verification)).toMatchObject({ verified: true, schemaDifference: [] });
      // None of these changes a row: the data diff alone would see nothing.
      expect(r.diff.tables).toEqual([]);
      const hidden = ["view zoo.arctic_species", "table zoo.enclosures", "trigger zoo.species.species_stamp_updated_at", "matview zoo.visit_totals"];
      for (const id of hidden)
        expect(
          r.diff.schemaChanges.map((c) => c.id),
          id,
        ).toContain(id);
      const edited = { ...r.diff, schemaChanges: r.diff.schemaChanges.filter((c) => !hidden.includes(c.id)) };
      const v = await verifyDiff(project, session.id, edited);
      expect(v.verified).toBe(false);
      for (const id of hidden)
        expect(
          v.schemaDifference.some((d) => d.startsWith(`${id}:`)),
          `${id} in ${JSON.stringify(v.schemaDifference)}`,
        ).toBe(true);
    } finally {
      await destroySession(project, session.id);
    }
  });

  it("airlock diff exits 2 on a diff that is NOT verified and 0 on a verified one", async () => {
    const session = await createSession(project, { name: "exits" });
    try {
      await asAgent(session.id, "UPDATE zoo.tickets SET note = 'réduit — €5' WHERE id = (SELECT min(id) FROM zoo.tickets)");
      const ok = cli("diff", session.id, "--json");
      expect(ok.status, ok.stdout).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ verified: true });
      // A diff whose replay cannot run: an enum value added and used in one transaction ("unsafe use of new value").
      await asAgent(session.id, "ALTER TYPE zoo.habitat ADD VALUE 'tundra'");
      await asAgent(session.id, "UPDATE zoo.species SET habitat = 'tundra' WHERE id = 1");
      const bad = cli("diff", session.id, "--json");
      expect(JSON.parse(bad.stdout)).toMatchObject({ verified: false });
      expect(bad.status).toBe(2);
    } finally {
      await destroySession(project, session.id);
    }
  });
});
