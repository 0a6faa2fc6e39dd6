/**
 * The production the promotion tests promote into (test/promote.test.ts): a
 * real cluster holding the demo dataset, a project whose snapshot is taken
 * from it with the demo's masking rules, and the ways the tests look at it.
 * The bindings are live: set by startPromoteProduction.
 */
import { type ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { expect } from "vitest";
import { seedDemo } from "../../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../../seeders/demo/masking.ts";
import { parseConfig } from "../../src/config/config.ts";
import { type Project } from "../../src/config/load.ts";
import { diffSession } from "../../src/diff/run-diff.ts";
import { type PgTarget, withClient } from "../../src/pg/connect.ts";
import { promoteDiff } from "../../src/promote/promote.ts";
import { agentConnection, createSession, destroySession } from "../../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./cluster.ts";
import { captureInto, createTestProject, removeTestProject } from "./project.ts";

export const SECRET = "promote-test-secret-0123456789";
export const BIN = resolve("bin/airlock.mjs");
const TABLES = ["gallery_images", "guests", "bookings", "payments", "reviews", "booking_events"];

export let prodCluster: TestCluster;
export let prod: PgTarget;
export let project: Project;

/** Each table's row count and an md5 of its rows. */
export async function checksums(): Promise<Record<string, string>> {
  return withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    const out: Record<string, string> = {};
    // By column name (to_jsonb), not position: a column a rollback re-adds comes back at the end of the table.
    for (const t of TABLES)
      out[t] = (
        await c.query(`SELECT count(*) || ':' || md5(coalesce(string_agg(to_jsonb(r)::text, E'\\n' ORDER BY to_jsonb(r)::text), '')) AS h FROM ${t} r`)
      ).rows[0].h;
    return out;
  });
}

/** Runs SQL in production as its superuser; the rows. */
export async function prodQuery(sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return withClient(prod, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql, values)).rows);
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

/** Promotes a diff to production as the tester. */
export const promote = (id: string, extra: Record<string, unknown> = {}) => promoteDiff(project, id, { to: prod, secret: SECRET, by: "tester", ...extra });

/** What `airlock promote` (process `child`, printing `output()`) shows in pg_stat_activity once it waits for a lock; throws if it exits first. */
export async function promoteBlocked(
  child: ChildProcess,
  output: () => string,
): Promise<{ query: string; wait_event_type: string; state: string; in_transaction: boolean; advisory_lock: boolean }> {
  return withClient(prodCluster.cluster.adminTarget("production"), { step: "test-monitor", searchPath: "public" }, async (monitor) => {
    for (let i = 0; i < 600; i++) {
      if (child.exitCode !== null) throw new Error(`promote exited before it blocked: ${output()}`);
      const r = await monitor.query(
        `SELECT a.query, a.wait_event_type, a.state, a.xact_start IS NOT NULL AS in_transaction,
                EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted) AS advisory_lock
           FROM pg_stat_activity a WHERE a.application_name = 'airlock/promote' AND a.wait_event_type = 'Lock'`,
      );
      if (r.rows.length > 0) return r.rows[0] as { query: string; wait_event_type: string; state: string; in_transaction: boolean; advisory_lock: boolean };
      await new Promise((res) => setTimeout(res, 50));
    }
    throw new Error(`promote never blocked: ${output()}`);
  });
}

/** Starts production with the demo dataset and takes the snapshot the sessions start from (beforeAll). */
export async function startPromoteProduction(): Promise<void> {
  // Diffs, approvals and both audit trails are keyed with AIRLOCK_SECRET, the one the snapshot is taken with.
  process.env.AIRLOCK_SECRET = SECRET;
  prodCluster = await startTestCluster("promote-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  project = await createTestProject("promote-project", `export default { promote: { lockTimeout: "500ms", statementTimeout: "20s" } };\n`);
  const rules = parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules;
  await captureInto(project, prod, SECRET, rules);
}

/** Removes the project and stops production (afterAll). */
export async function stopPromoteProduction(): Promise<void> {
  await removeTestProject(project);
  await prodCluster?.close();
}
