/**
 * The production the snapshot tests capture (test/snapshot.test.ts): a real
 * cluster holding the demo dataset, a second column in the email domain, a
 * masked key a foreign key points at, and a role that can only read; the
 * capture options, the first snapshot, and how the tests look into
 * snapshots and restored databases. The bindings are live: set by
 * startSnapshotProduction.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { seedDemo } from "../../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../../seeders/demo/masking.ts";
import { parseConfig } from "../../src/config/config.ts";
import type { MaskRule } from "../../src/config/masking-rules.ts";
import { findPgBinaries } from "../../src/pg/binaries.ts";
import { type PgTarget, makeTarget, withClient } from "../../src/pg/connect.ts";
import { type CaptureOptions, captureSnapshot } from "../../src/snapshot/capture.ts";
import { restoreSnapshot } from "../../src/snapshot/restore.ts";
import { type SnapshotManifest, snapshotDir } from "../../src/snapshot/store.ts";
import { type TestCluster, startTestCluster, testRoot } from "./cluster.ts";

export const SECRET = "snapshot-test-secret-0123456789";
export let tc: TestCluster;
export let prod: PgTarget;
export let reader: PgTarget;
export let rules: Record<string, MaskRule>;
export let stateDir: string;
export let first: SnapshotManifest;

/** Masking rules as the config would hold them. */
export function parseRules(input: Record<string, unknown>): Record<string, MaskRule> {
  return parseConfig({ masking: { rules: input } }).masking.rules;
}

/** Capture options: the read-only role, the rules, this test's snapshots directory; `over` replaces any of them. */
export function options(over: Partial<CaptureOptions> = {}): CaptureOptions {
  return {
    source: reader,
    secret: SECRET,
    rules,
    snapshotsDir: join(stateDir, "snapshots"),
    statementTimeoutMs: 60_000,
    lockTimeoutMs: 5_000,
    sampleSize: 200,
    ...over,
  };
}

/** Runs SQL on a database as its superuser; the rows. */
export async function rows(target: PgTarget, sql: string): Promise<Record<string, unknown>[]> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql)).rows);
}

/** What the snapshots directory holds. */
export function snapshotEntries(): string[] {
  const dir = join(stateDir, "snapshots");
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Every byte of a snapshot, decompressed, as one string. */
export function snapshotText(id: string): string {
  const root = snapshotDir(join(stateDir, "snapshots"), id);
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  return walk(root)
    .map((f) => (f.endsWith(".gz") ? gunzipSync(readFileSync(f)).toString("utf8") : readFileSync(f, "utf8")))
    .join("\n");
}

/** A new database `db` with the snapshot restored into it. */
export async function restoreInto(db: string, manifest: SnapshotManifest): Promise<PgTarget> {
  const target = await tc.createDatabase(db);
  await restoreSnapshot({ target, dir: snapshotDir(join(stateDir, "snapshots"), manifest.id), manifest });
  return target;
}

/** A database's `pg_dump --schema-only`, without owners, privileges or comments. */
export function schemaOf(target: PgTarget): string {
  const out = execFileSync(
    findPgBinaries().tool("pg_dump"),
    ["--schema-only", "--no-owner", "--no-privileges", "--no-comments", "-h", target.host, "-p", String(target.port), "-U", target.user, target.database],
    { encoding: "utf8" },
  );
  return out
    .split("\n")
    .filter((l) => !/^\\(un)?restrict /.test(l))
    .join("\n");
}

/** Starts production with the demo dataset and a few tables more, a read-only role, and takes the first snapshot (beforeAll). */
export async function startSnapshotProduction(): Promise<void> {
  tc = await startTestCluster("snapshot");
  prod = await tc.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    // A second column in the email domain, and a masked key that a foreign key points at.
    await c.query("CREATE TABLE newsletter (address text NOT NULL, joined date NOT NULL)");
    await c.query("INSERT INTO newsletter SELECT email, '2024-01-01' FROM guests WHERE id % 4 = 0");
    await c.query("CREATE TABLE accounts (username text PRIMARY KEY, plan text NOT NULL)");
    await c.query("CREATE TABLE logins (id serial PRIMARY KEY, username text NOT NULL REFERENCES accounts, at timestamptz NOT NULL)");
    await c.query("INSERT INTO accounts SELECT 'user_' || id || '_' || md5(email), 'basic' FROM guests WHERE id <= 50");
    await c.query("INSERT INTO logins (username, at) SELECT username, '2024-02-02 10:00+00' FROM accounts, generate_series(1, 3)");
    // A role that can only read: capture needs nothing more.
    await c.query("CREATE ROLE reader LOGIN PASSWORD 'reader-pw-123456'");
    await c.query("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader");
    await c.query("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO reader");
  });
  reader = makeTarget({ host: "127.0.0.1", port: tc.cluster.port, database: "production", user: "reader", password: "reader-pw-123456" });
  rules = parseRules({
    ...DEMO_MASKING_RULES,
    "newsletter.address": { faker: "email", domain: "email" },
    "accounts.username": "username",
    "accounts.plan": "keep",
  });
  stateDir = join(testRoot(), `snapshot-state-${process.pid}`);
  mkdirSync(stateDir, { recursive: true });
  first = await captureSnapshot(options());
}

/** Stops production and removes the snapshots (afterAll). */
export async function stopSnapshotProduction(): Promise<void> {
  await tc?.close();
  rmSync(stateDir, { recursive: true, force: true });
}
