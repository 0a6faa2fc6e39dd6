/**
 * The production the wild-data tests promote into (test/wild-data.test.ts):
 * keyless tables with duplicates, tables with no copyable columns, a cycle of
 * deferrable foreign keys, a partitioned table; a project whose snapshot is
 * taken from it; and how the tests compare it as a whole. The bindings are
 * live: set by startWildProduction.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Project } from "../../src/config/load.ts";
import { diffSession } from "../../src/diff/run-diff.ts";
import { findPgBinaries } from "../../src/pg/binaries.ts";
import { type PgTarget, formatUrl, withClient } from "../../src/pg/connect.ts";
import { promoteDiff } from "../../src/promote/promote.ts";
import { rollbackPromotion } from "../../src/promote/rollback.ts";
import { captureSnapshot } from "../../src/snapshot/capture.ts";
import { agentConnection, createSession } from "../../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./cluster.ts";
import { createTestProject, removeTestProject } from "./project.ts";

export const SECRET = "wild-data-test-secret-0123456789abcdef";
const BIN = resolve("bin/airlock.mjs");

const PRODUCTION = `
  -- No key at all, with duplicate rows and NULLs.
  CREATE TABLE tally (n int, note text);
  INSERT INTO tally VALUES (1, 'a'), (1, 'a'), (2, 'b'), (3, NULL), (3, NULL), (5, 'e');
  -- Nothing to COPY: no columns, and only a generated one.
  CREATE TABLE no_columns ();
  INSERT INTO no_columns SELECT FROM generate_series(1, 3);
  CREATE TABLE only_generated (g text GENERATED ALWAYS AS ('computed') STORED);
  INSERT INTO only_generated SELECT FROM generate_series(1, 2);
  -- A cycle of deferrable (initially immediate) foreign keys with rows in it.
  CREATE TABLE ring_a (id int PRIMARY KEY, b_id int NOT NULL);
  CREATE TABLE ring_b (id int PRIMARY KEY, a_id int NOT NULL REFERENCES ring_a DEFERRABLE);
  ALTER TABLE ring_a ADD CONSTRAINT ring_a_b_fkey FOREIGN KEY (b_id) REFERENCES ring_b DEFERRABLE;
  BEGIN;
  SET CONSTRAINTS ALL DEFERRED;
  INSERT INTO ring_a VALUES (1, 1), (2, 2);
  INSERT INTO ring_b VALUES (1, 1), (2, 2);
  COMMIT;
  CREATE TABLE gallery_images (id int PRIMARY KEY, title text NOT NULL, category text NOT NULL);
  INSERT INTO gallery_images SELECT g, 'image ' || g, 'rooms' FROM generate_series(1, 40) g;
  -- A partitioned table production keeps writing to: the snapshot holds its rows as those of its partitions.
  CREATE TABLE readings (id int, taken date NOT NULL, value int, PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
  CREATE TABLE readings_2024 PARTITION OF readings FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
  CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  INSERT INTO readings VALUES (1, '2024-03-01', 10), (2, '2025-03-01', 20), (3, '2025-04-01', 30);`;

/** Added to production once the tests before it ran: a parent and its inheritance child sharing keys, and a keyless pair holding equal rows. */
export const INHERITANCE = `
  CREATE TABLE inh_par (id int PRIMARY KEY, x int NOT NULL);
  -- A primary key is not inherited: the child's own one lets its keys be the parent's too.
  CREATE TABLE inh_kid (y text NOT NULL) INHERITS (inh_par);
  ALTER TABLE inh_kid ADD PRIMARY KEY (id);
  INSERT INTO inh_par VALUES (1, 10), (2, 20), (3, 30);
  INSERT INTO inh_kid VALUES (1, 100, 'one'), (2, 200, 'two'), (5, 500, 'five');
  -- No key on either side: rows equal through the parent's columns are in both.
  CREATE TABLE inh_log (n int, note text);
  CREATE TABLE inh_log_kid (extra int) INHERITS (inh_log);
  INSERT INTO inh_log VALUES (1, 'a'), (2, 'b');
  INSERT INTO inh_log_kid VALUES (1, 'a', 9), (3, 'c', 9);`;

export let prodCluster: TestCluster;
export let prod: PgTarget;
export let prodUrl: string;
export let project: Project;

/** Runs SQL on a database as its superuser; the rows. */
export async function prodQuery(target: PgTarget, sql: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql, values)).rows);
}

/** Production as a whole, outside the airlock schema: `pg_dump --schema-only` and every table's rows as a sorted multiset. */
export async function productionState(): Promise<{ schema: string; rows: Record<string, string> }> {
  const dump = execFileSync(findPgBinaries().tool("pg_dump"), ["--schema-only", "--exclude-schema=airlock", `--dbname=${prodUrl}`], { encoding: "utf8" });
  // pg_dump brackets its output with a random \restrict token each run.
  const schema = dump.replace(/^\\(un)?restrict .*$/gm, "");
  const rows: Record<string, string> = {};
  const tables = await prodQuery(
    prod,
    "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS t FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema', 'airlock') ORDER BY 1",
  );
  for (const { t } of tables as Array<{ t: string }>) {
    rows[t] = String(
      (
        await prodQuery(prod, `SELECT count(*) || ':' || md5(coalesce(string_agg(to_jsonb(r)::text, E'\\n' ORDER BY to_jsonb(r)::text), '')) AS h FROM ${t} r`)
      )[0]!.h,
    );
  }
  return { schema, rows };
}

/** A session where the agent runs `sql`, diffed (not destroyed: the caller compares with it). */
export async function agentSession(name: string, sql: string): Promise<{ session: string; agent: PgTarget; diff: Awaited<ReturnType<typeof diffSession>> }> {
  const s = await createSession(project, { name });
  const agent = agentConnection(project, s.id).target;
  await withClient(agent, { step: "test-agent", searchPath: "public" }, (c) => c.query(sql));
  const diff = await diffSession(project, s.id);
  return { session: s.id, agent, diff };
}

/** Promotes a diff to production as the tester. */
export const promote = (id: string) => promoteDiff(project, id, { to: prod, secret: SECRET, by: "tester" });
/** Rolls a promotion back. */
export const rollback = (promotionId: string) => rollbackPromotion(project, promotionId, { to: prod, by: "tester" });
/** A table's rows as a sorted multiset of JSON. */
export const multiset = async (target: PgTarget, table: string) =>
  (await prodQuery(target, `SELECT to_jsonb(r)::text AS r FROM ${table} r ORDER BY 1`)).map((x) => x.r as string);

/** The CLI, run in the project without a production URL in the environment. */
export const cli = (args: readonly string[]) =>
  spawnSync(process.execPath, [BIN, ...args], { cwd: project.dir, encoding: "utf8", env: { ...process.env, PROD_DATABASE_URL: "" } });

/** A snapshot of production into `dir` (the project's snapshots unless given). */
export const takeSnapshot = (dir = project.statePath("snapshots")) =>
  captureSnapshot({ source: prod, secret: SECRET, rules: {}, snapshotsDir: dir, statementTimeoutMs: 60_000, lockTimeoutMs: 5_000, sampleSize: 200 });

/** A capture of production into `dir` in a child process that hangs once it starts copying tables (to be killed); resolves then, with the child. */
export async function hangingCapture(dir: string) {
  const script = join(project.dir, "capture-and-hang.mts");
  writeFileSync(
    script,
    `import { captureSnapshot } from ${JSON.stringify(resolve("src/snapshot/capture.ts"))};
     import { parseTarget } from ${JSON.stringify(resolve("src/pg/connect.ts"))};
     await captureSnapshot({ source: parseTarget(${JSON.stringify(prodUrl)}), secret: ${JSON.stringify(SECRET)}, rules: {}, snapshotsDir: ${JSON.stringify(dir)},
       statementTimeoutMs: 60_000, lockTimeoutMs: 5_000, sampleSize: 200,
       onProgress: (p) => { if (p.phase === "table") { process.stdout.write("copying\\n"); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600_000); } } });`,
  );
  const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((res, rej) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("copying") && res());
    child.on("exit", (code) => rej(new Error(`the capture exited (${code}) before copying`)));
  });
  return child;
}

/** Starts production, fills it, and takes the snapshot the sessions start from (beforeAll). */
export async function startWildProduction(): Promise<void> {
  // diff and promote key what they write with it; the capture and the CLI children read it too.
  process.env.AIRLOCK_SECRET = SECRET;
  prodCluster = await startTestCluster("wild-data-prod");
  prod = await prodCluster.createDatabase("production");
  prodUrl = formatUrl(prodCluster.cluster.tcpTarget("production"), true);
  await prodQuery(prod, PRODUCTION);
  project = await createTestProject(
    "wild-data-project",
    `export default { promote: { lockTimeout: "2s", statementTimeout: "30s" }, hazards: { bulkRows: 50, bulkFraction: 0.1 } };\n`,
  );
  await takeSnapshot();
}

/** Removes the project and stops production (afterAll). */
export async function stopWildProduction(): Promise<void> {
  await removeTestProject(project);
  await prodCluster?.close();
}
