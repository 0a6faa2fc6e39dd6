/**
 * The production the trust tests attack (test/trust.test.ts): a real cluster
 * with a keyed and a keyless table, a project whose snapshot is taken from it,
 * and the ways the tests look at it — its whole state, the CLI, an agent's
 * session diffed. The bindings are live: set by startTrustProduction.
 */
import { execFileSync, spawn } from "node:child_process";
import { resolve } from "node:path";
import { expect } from "vitest";
import { type Project } from "../../src/config/load.ts";
import { diffSession } from "../../src/diff/run-diff.ts";
import { readDiff } from "../../src/diff/store.ts";
import { findPgBinaries } from "../../src/pg/binaries.ts";
import { type PgTarget, formatUrl, withClient } from "../../src/pg/connect.ts";
import { approveDiff } from "../../src/promote/approval.ts";
import { promoteDiff } from "../../src/promote/promote.ts";
import { agentConnection, createSession, destroySession } from "../../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./project.ts";

export const SECRET = "trust-test-secret-0123456789abcdef";
const BIN = resolve("bin/airlock.mjs");
const PRODUCTION = `
  CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, qty int NOT NULL DEFAULT 0);
  INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(1, 50) g;
  CREATE TABLE tally (n int NOT NULL);
  INSERT INTO tally VALUES (1), (2);`;

export let prodCluster: TestCluster;
export let prod: PgTarget;
export let prodUrl: string;
export let project: Project;

/** Runs SQL in production as its superuser; the rows. */
export async function prodQuery(sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return withClient(prod, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql, values)).rows);
}

/** Production as a whole: `pg_dump --schema-only`, and every table's rows (the airlock audit tables too, unless left out). */
export async function productionState(options: { withoutAuditLog?: boolean } = {}): Promise<{ schema: string; rows: Record<string, string> }> {
  const dump = execFileSync(findPgBinaries().tool("pg_dump"), ["--schema-only", `--dbname=${prodUrl}`], { encoding: "utf8" });
  // pg_dump brackets its output with a random \restrict token each run.
  const schema = dump.replace(/^\\(un)?restrict .*$/gm, "");
  const rows: Record<string, string> = {};
  const tables = await prodQuery(
    "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
  );
  for (const { t } of tables as Array<{ t: string }>) {
    if (options.withoutAuditLog === true && (t === "airlock.audit_log" || t === "airlock.audit_head")) continue;
    rows[t] = String(
      (await prodQuery(`SELECT count(*) || ':' || md5(coalesce(string_agg(to_jsonb(r)::text, E'\\n' ORDER BY to_jsonb(r)::text), '')) AS h FROM ${t} r`))[0]!.h,
    );
  }
  return { schema, rows };
}

/** The CLI, run in the project with AIRLOCK_SECRET (unless env says otherwise). */
export function airlock(
  args: string[],
  env: NodeJS.ProcessEnv = { ...process.env, AIRLOCK_SECRET: SECRET },
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [BIN, ...args], { cwd: project.dir, env: { ...env, PROD_DATABASE_URL: "" }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    p.on("close", (code) => res({ code, stdout, stderr }));
  });
}

/** A session where the agent runs `sql`, diffed; returns the diff id. */
export async function agentDiff(name: string, sql: string): Promise<string> {
  const s = await createSession(project, { name });
  await withClient(agentConnection(project, s.id).target, { step: "test-agent", searchPath: "public" }, (c) => c.query(sql));
  const r = await diffSession(project, s.id);
  expect(r.diff.verification.verified).toBe(true);
  await destroySession(project, s.id);
  return r.id;
}

/** Approves a diff accepting whatever danger hazards it has (a keyless table's rows may be one). */
export function approveAccepting(id: string) {
  const accept = [
    ...new Set(
      readDiff(project, id)
        .diff.hazards.filter((h) => h.severity === "danger")
        .map((h) => h.code),
    ),
  ];
  return approveDiff(project, id, { by: "reviewer", accept });
}

/** Promotes a diff to production as the tester. */
export const promote = (id: string, extra: Record<string, unknown> = {}) => promoteDiff(project, id, { to: prod, secret: SECRET, by: "tester", ...extra });
/** Rows in production's keyless tally table. */
export const tallyCount = async () => (await prodQuery("SELECT count(*)::int AS n FROM tally"))[0]!.n as number;

/** Starts production, fills it, and takes the snapshot the sessions start from (beforeAll). */
export async function startTrustProduction(): Promise<void> {
  process.env.AIRLOCK_SECRET = SECRET;
  prodCluster = await startTestCluster("trust-prod");
  prod = await prodCluster.createDatabase("production");
  prodUrl = formatUrl(prodCluster.cluster.tcpTarget("production"), true);
  await prodQuery(PRODUCTION);
  project = await createTestProject("trust-project", `export default { promote: { lockTimeout: "500ms", statementTimeout: "20s" } };\n`);
  await captureInto(project, prod, SECRET);
}

/** Removes the project and stops production (afterAll). */
export async function stopTrustProduction(): Promise<void> {
  await removeTestProject(project);
  await prodCluster?.close();
}
