/**
 * One restore in two places: the local backend restores a snapshot over a
 * connection (restoreSnapshot, src/snapshot/restore.ts), the staging
 * container with the psql scripts src/staging/container-restore.ts writes.
 * Both run here on one real cluster, on a snapshot of the schema zoo
 * (test/fixtures/wild/zoo.sql) with test/fixtures/wild/restore-extras.sql
 * added, and must give the same database, on base and on work: the catalog
 * model production had (checkRestoredCatalog), every table's rows and every
 * materialized view's populated state and rows (equal to production's), the
 * database-level settings, and production's roles as placeholders with the
 * same attributes.
 *
 * Roles belong to the cluster, not to a database: production is dropped with
 * its roles once captured, so that each restore has to create them; the
 * container's databases and the roles it made are dropped again before the
 * local restore runs. The container's psql runs with session defaults other
 * than Airlock's pins (as a server configured otherwise would give it), so a
 * materialized view whose text depends on them tells whether the script
 * pins its session as the local restore's connection does.
 */
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyDatabaseSettings, checkRestoredCatalog } from "../src/catalog/restore.ts";
import type { Project } from "../src/config/load.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { type PgTarget, quoteIdent, withClient } from "../src/pg/connect.ts";
import { CATALOG_FILE, MANIFEST_FILE } from "../src/snapshot/format.ts";
import { restoreSnapshot } from "../src/snapshot/restore.ts";
import { type SnapshotManifest, readSnapshotCatalog, snapshotDir } from "../src/snapshot/store.ts";
import { CONTAINER_PATHS, SnapshotFileError, checksumList, readSnapshotForRestore, restoreSql, rolesSql } from "../src/staging/container-restore.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { type State, catalog, checksums, differences, ownerless, recordDiff, relations, rows } from "./helpers/database-state.ts";
import { caught } from "./helpers/errors.ts";
import { openDir, openUp } from "./helpers/infra-fixtures.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const SECRET = "container-restore-secret-0123456789";
const ZOO = readFileSync(resolve("test/fixtures/wild/zoo.sql"), "utf8");
const EXTRAS = readFileSync(resolve("test/fixtures/wild/restore-extras.sql"), "utf8");
const PRODUCTION_ROLES = ["zoo_app", "zoo_reporting", "zoo_auditor"];
/** Session defaults of a server configured unlike Airlock's pins (src/pg/connect.ts): the container's psql starts with these. */
const FOREIGN_SESSION = "-c TimeZone=Asia/Tokyo -c DateStyle=SQL,DMY -c IntervalStyle=sql_standard -c extra_float_digits=0";
const AGENT_PASSWORD = "container-restore-agent-Pw-1";

let tc: TestCluster;
let project: Project;
let manifest: SnapshotManifest;
/** The captured snapshot, as the store keeps it (private modes). */
let dir: string;
/** A copy of it the server's OS user can read, where restore.sql's COPY … FROM PROGRAM finds it. */
let staged: string;
let scratch: string;
let production: { readonly state: Pick<State, "relations" | "checksums">; readonly settings: string[] };
let rolesBefore: Set<string>;

/** Runs a psql script as the init script does (psql -X -q, ON_ERROR_STOP), with the foreign session defaults. */
function psql(database: string, sql: string, name: string): { status: number | null; stderr: string } {
  const file = join(scratch, name);
  writeFileSync(file, sql);
  const t = tc.cluster.tcpTarget(database);
  const r = spawnSync(
    join(findPgBinaries().dir, "psql"),
    ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", t.host, "-p", String(t.port), "-U", t.user, "--no-password", "-d", database, "-f", file],
    {
      encoding: "utf8",
      timeout: 120_000,
      env: { PATH: process.env.PATH ?? "", PGPASSWORD: t.password ?? "", PGOPTIONS: FOREIGN_SESSION, AIRLOCK_AGENT_PASSWORD: AGENT_PASSWORD },
    },
  );
  return { status: r.status, stderr: r.stderr };
}

const admin = (db = "postgres"): PgTarget => tc.cluster.adminTarget(db);

/** ALTER DATABASE … SET of a database, sorted. */
async function databaseSettings(db: string): Promise<string[]> {
  const r = await rows(
    admin(),
    "SELECT coalesce((SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = $1)), '{}') AS s",
    [db],
  );
  return [...(r[0]!.s as string[])].sort();
}

/** Everything the two restores must agree on, read from a restored base and its work. */
interface Restored {
  readonly catalogCheck: { readonly base: string; readonly work: string };
  readonly catalog: Awaited<ReturnType<typeof catalog>>;
  readonly relations: Record<string, string>;
  readonly checksums: { readonly base: Record<string, string>; readonly work: Record<string, string> };
  readonly settings: { readonly base: string[]; readonly work: string[] };
  readonly roles: Record<string, string>;
}

async function restored(base: string, work: string): Promise<Restored> {
  const expected = readSnapshotCatalog(dir, manifest)!;
  const owners = manifest.catalog!.owners;
  const check = (db: string) =>
    withClient(admin(db), { step: "test" }, (c) => checkRestoredCatalog(c, expected, owners, manifest.id)).then(
      () => "production's catalog model",
      (e: unknown) => (e as Error).message,
    );
  const roles = await rows(
    admin(),
    `SELECT rolname, json_build_object('super', rolsuper, 'inherit', rolinherit, 'createrole', rolcreaterole, 'createdb', rolcreatedb, 'login', rolcanlogin,
            'replication', rolreplication, 'bypassrls', rolbypassrls, 'connlimit', rolconnlimit, 'config', rolconfig) AS a
       FROM pg_roles WHERE rolname = ANY($1)`,
    [PRODUCTION_ROLES],
  );
  return {
    catalogCheck: { base: await check(base), work: await check(work) },
    catalog: await catalog(admin(base), [...owners, admin().user]),
    relations: ownerless(await relations(admin(base))),
    checksums: { base: await checksums(admin(base)), work: await checksums(admin(work)) },
    settings: { base: await databaseSettings(base), work: await databaseSettings(work) },
    roles: Object.fromEntries(roles.map((r) => [r.rolname as string, JSON.stringify(r.a)])),
  };
}

/** Drops the databases a restore made and the roles it created, so the next restore starts from the same cluster. */
async function dropRestore(...databases: string[]): Promise<void> {
  for (const db of databases) await rows(admin(), `DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
  const made = (await rows(admin(), "SELECT rolname FROM pg_roles")).map((r) => r.rolname as string).filter((r) => !rolesBefore.has(r));
  for (const role of made) await rows(admin(), `DROP ROLE ${quoteIdent(role)}`);
}

/** What the container runs: restore.sql into an empty base, then roles.sql (work from base, the agent's role). */
async function containerRestore(options: { stagedDir: string; base: string }): Promise<{ status: number | null; stderr: string }> {
  const snapshot = readSnapshotForRestore(dir, manifest.id);
  const restore = { ...snapshot, maxConnections: 3, statementTimeout: "1min", paths: { ...CONTAINER_PATHS, staged: options.stagedDir } };
  await rows(admin(), `CREATE DATABASE ${quoteIdent(options.base)}`);
  const r = psql(options.base, restoreSql(restore), `restore-${options.base}.sql`);
  if (r.status !== 0 || options.base !== "base") return r;
  return psql("postgres", rolesSql(restore), "roles.sql");
}

beforeAll(async () => {
  tc = await startTestCluster("container-restore");
  const prod = await tc.createDatabase("production");
  await rows(prod, ZOO);
  await rows(prod, EXTRAS);
  project = await createTestProject("container-restore");
  manifest = await captureInto(project, prod, SECRET);
  dir = snapshotDir(project.statePath("snapshots"), manifest.id);
  scratch = openDir("container-restore-staged");
  staged = join(scratch, "snapshot");
  cpSync(dir, staged, { recursive: true });
  openUp(staged);
  production = { state: { relations: ownerless(await relations(prod)), checksums: await checksums(prod) }, settings: await databaseSettings("production") };
  // Production's roles exist only in production.
  await rows(admin(), "DROP DATABASE production WITH (FORCE)");
  for (const role of PRODUCTION_ROLES) await rows(admin(), `DROP ROLE ${quoteIdent(role)}`);
  rolesBefore = new Set((await rows(admin(), "SELECT rolname FROM pg_roles")).map((r) => r.rolname as string));
}, 180_000);

afterAll(async () => {
  await removeTestProject(project);
  await tc?.close();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

describe("one restore for both backends", () => {
  it("the container's restore and the local restore produce the same database", async () => {
    // (b) The container's scripts, through psql.
    const ran = await containerRestore({ stagedDir: staged, base: "base" });
    expect(ran.status, ran.stderr).toBe(0);
    const container = await restored("base", "work");
    await dropRestore("base", "work");

    // (a) The local backend's restore, and a session's work as the local backend makes it: a clone of the
    // template, given production's database settings (CREATE DATABASE … TEMPLATE does not copy them).
    const expected = readSnapshotCatalog(dir, manifest)!;
    await tc.createDatabase("local_base");
    await restoreSnapshot({ target: admin("local_base"), dir, manifest });
    await rows(admin(), "CREATE DATABASE local_work TEMPLATE local_base");
    await withClient(admin("local_work"), { step: "test" }, (c) => applyDatabaseSettings(c, expected));
    const local = await restored("local_base", "local_work");

    const placeholder = JSON.stringify({
      super: false,
      inherit: false,
      createrole: false,
      createdb: false,
      login: false,
      replication: false,
      bypassrls: false,
      connlimit: -1,
      config: null,
    });
    const problems = (side: string, r: Restored): string[] => [
      ...Object.entries(r.catalogCheck)
        .filter(([, verdict]) => verdict !== "production's catalog model")
        .map(([db, verdict]) => `${side} ${db}: ${verdict}`),
      ...recordDiff(r.relations, production.state.relations).map((x) => `${side} relation ${x}`),
      ...recordDiff(r.checksums.base, production.state.checksums).map((x) => `${side} base rows of ${x}`),
      ...recordDiff(r.checksums.work, production.state.checksums).map((x) => `${side} work rows of ${x}`),
      ...(JSON.stringify(r.settings.base) === JSON.stringify(production.settings) ? [] : [`${side} base settings: ${JSON.stringify(r.settings.base)}`]),
      ...(JSON.stringify(r.settings.work) === JSON.stringify(production.settings) ? [] : [`${side} work settings: ${JSON.stringify(r.settings.work)}`]),
      ...PRODUCTION_ROLES.filter((role) => r.roles[role] !== placeholder).map((role) => `${side} role ${role}: ${r.roles[role] ?? "(none)"}`),
    ];
    expect([
      ...problems("container", container),
      ...problems("local", local),
      ...differences(container.catalog, local.catalog, true).map((x) => `container vs local catalog ${x}`),
    ]).toEqual([]);
    // The fixture holds what the comparison is about.
    expect(production.settings).toHaveLength(3);
    expect(Object.keys(production.state.checksums)).toEqual(
      expect.arrayContaining(["shop.heartbeats", "shop.constants", 'matview "Sales"."By Day"', 'matview shop."Band Summary"', 'matview shop."Totals Copy"']),
    );
    expect(production.state.relations["shop.category_totals"]).toContain("populated=false");
    expect(production.state.checksums["shop.heartbeats"]).toMatch(/^3:/);
  }, 180_000);

  it("a tampered catalog file or data file is refused, by both restores", async () => {
    const copy = (name: string): string => {
      const to = join(scratch, name);
      cpSync(dir, to, { recursive: true });
      openUp(to);
      return to;
    };
    const flip = (file: string, at: (length: number) => number): void => {
      const bytes = readFileSync(file);
      const i = at(bytes.length);
      bytes[i] = bytes[i]! ^ 0x01;
      writeFileSync(file, bytes);
    };

    // The catalog: one byte changed, gone, or outside the snapshot.
    const tampered = copy("tampered-catalog");
    flip(join(tampered, CATALOG_FILE), (n) => Math.floor(n / 2));
    expect(() => readSnapshotForRestore(tampered, manifest.id)).toThrow(SnapshotFileError);
    expect(() => readSnapshotForRestore(tampered, manifest.id)).toThrow(/catalog\.json does not match its checksum/);
    const local = await tc.createDatabase("tampered_catalog");
    expect((await caught(restoreSnapshot({ target: local, dir: tampered, manifest }))).code).toBe("AIRLOCK_SNAPSHOT_CORRUPT");
    rmSync(join(tampered, CATALOG_FILE));
    expect(() => readSnapshotForRestore(tampered, manifest.id)).toThrow(SnapshotFileError);
    const outside = copy("catalog-outside");
    const raw = JSON.parse(readFileSync(join(outside, MANIFEST_FILE), "utf8"));
    raw.catalog.file = "../tampered-catalog/catalog.json";
    writeFileSync(join(outside, MANIFEST_FILE), JSON.stringify(raw));
    expect(() => readSnapshotForRestore(outside, manifest.id)).toThrow(/catalog/);

    // A data file: the container's checksum list (the entrypoint's sha256sum --check) and the local restore refuse it,
    // and restore.sql, should it run on the file anyway, changes nothing (one transaction).
    const corrupt = copy("tampered-data");
    const table = manifest.tables.find((t) => t.rows > 0)!;
    flip(join(corrupt, table.file), (n) => n - 6);
    writeFileSync(join(scratch, "SHA256SUMS"), checksumList(readSnapshotForRestore(corrupt, manifest.id).manifest));
    const sums = spawnSync("sha256sum", ["--check", "--quiet", join(scratch, "SHA256SUMS")], { cwd: corrupt, encoding: "utf8" });
    expect(sums.status).not.toBe(0);
    expect(sums.stdout).toContain(table.file);
    const target = await tc.createDatabase("tampered_data");
    expect((await caught(restoreSnapshot({ target, dir: corrupt, manifest }))).code).toBe("AIRLOCK_SNAPSHOT_CORRUPT");
    const ran = await containerRestore({ stagedDir: corrupt, base: "tampered_data_container" });
    expect(ran.status).not.toBe(0);
    for (const db of ["tampered_data", "tampered_data_container"])
      expect(await rows(admin(db), "SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop'")).toEqual(
        [{ n: 0 }],
      );
  }, 120_000);
});
