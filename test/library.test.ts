/**
 * The library is the product: the whole workflow through `src/index.ts`
 * alone (what `import … from "airlock"` gives), against a real production
 * cluster — capture, a session with an agent's SQL, diff, approval,
 * promotion, audit verification, rollback — and the audit trails it leaves
 * are the ones the CLI leaves (test/e2e.test.ts): every entry is written by
 * the library, none by the CLI.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuditEntry,
  type PgTarget,
  type Project,
  agentConnection,
  approveDiff,
  assertTrailsIntact,
  defaultSandbox,
  destroyCluster,
  destroySession,
  diffSession,
  findPgBinaries,
  formatUrl,
  listSessions,
  loadProject,
  openCluster,
  productionTarget,
  promoteDiff,
  readJournal,
  rollbackPromotion,
  runAgent,
  takeSnapshot,
  verifyAudit,
  withClient,
} from "../src/index.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";

const SECRET = "library-test-secret-0123456789abcdef";
let prodCluster: TestCluster;
let prod: PgTarget;
let project: Project;
const saved = { secret: process.env.AIRLOCK_SECRET, url: process.env.PROD_DATABASE_URL };

async function items(target: PgTarget): Promise<string> {
  return withClient(
    target,
    { step: "test", searchPath: "public" },
    async (c) => (await c.query("SELECT string_agg(id || ':' || sku || ':' || qty, ',' ORDER BY id) AS s FROM items")).rows[0].s as string,
  );
}

const actions = (entries: readonly AuditEntry[]) => entries.map((e) => e.action);

beforeAll(async () => {
  prodCluster = await startTestCluster("library-prod");
  prod = await prodCluster.createDatabase("production");
  await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    await c.query("CREATE TABLE items (id serial PRIMARY KEY, sku text NOT NULL UNIQUE, qty integer NOT NULL)");
    await c.query("INSERT INTO items (sku, qty) SELECT 'sku-' || n, n FROM generate_series(1, 20) n");
  });
  // As the CLI does, the library takes AIRLOCK_SECRET and production from the environment unless told otherwise.
  process.env.AIRLOCK_SECRET = SECRET;
  process.env.PROD_DATABASE_URL = formatUrl(prodCluster.cluster.tcpTarget("production"), true);
  const dir = testClusterDir("library-project");
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  // The project's airlock.config.ts uses the library's defineConfig (from the checkout: "airlock" is not installed here).
  writeFileSync(
    join(dir, "airlock.config.ts"),
    `import { defineConfig } from ${JSON.stringify(resolve("src/index.ts"))};\n\nexport default defineConfig({ masking: { sampleSize: 100 } });\n`,
  );
  project = await loadProject({ dir });
});

afterAll(async () => {
  if (project !== undefined) {
    const staging = openCluster({ dir: project.statePath("cluster") });
    if (staging !== undefined) await destroyCluster(staging);
    rmSync(project.dir, { recursive: true, force: true });
  }
  await prodCluster?.close();
  for (const [name, value] of [
    ["AIRLOCK_SECRET", saved.secret],
    ["PROD_DATABASE_URL", saved.url],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe("the workflow through the library alone", () => {
  it("capture → run (agent SQL) → diff → approve → promote → audit verify → rollback, with the CLI's audit trail", async () => {
    expect(project.config.masking.sampleSize).toBe(100);
    const original = await items(prod);

    const manifest = await takeSnapshot(project);
    expect(manifest.leakScan.ok).toBe(true);
    expect(manifest.tables.map((t) => `${t.schema}.${t.name}:${t.rows}`)).toEqual(["public.items:20"]);

    const psql = findPgBinaries().tool("psql");
    const sql = "UPDATE items SET qty = 99 WHERE sku = 'sku-3'; INSERT INTO items (sku, qty) VALUES ('sku-new', 1);";
    const run = await runAgent(project, [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], {
      name: "library",
      sandbox: defaultSandbox() ?? "none",
      stdio: "ignore",
    });
    expect(run.exitCode).toBe(0);
    expect(listSessions(project).map((s) => s.id)).toContain(run.session.id);
    // The agent's change is in its staging database, and only there.
    expect(await items(agentConnection(project, run.session.id).target)).toContain("3:sku-3:99");
    expect(await items(prod)).toBe(original);

    const diff = await diffSession(project, run.session.id);
    expect(diff.diff.verification.verified).toBe(true);
    expect(diff.diff.summary).toMatchObject({ inserts: 1, updates: 1, deletes: 0, ddl: 0 });

    const approval = approveDiff(project, diff.id, { by: "reviewer", note: "restock sku-3" });
    expect(approval.diffId).toBe(diff.id);

    const promotion = await promoteDiff(project, diff.id.slice(0, 12), { to: productionTarget(undefined, "to"), by: "releaser" });
    expect(promotion).toMatchObject({ diffId: diff.id, approvalId: approval.id, dryRun: false, confirmed: true });
    const promoted = await items(prod);
    expect(promoted).toContain("3:sku-3:99");
    expect(promoted).toContain(":sku-new:1");

    const verified = await verifyAudit(project);
    assertTrailsIntact(verified);
    expect(verified.productionChecked).toBe(true);
    expect(verified.anchors?.checked).toBeGreaterThan(0);
    expect(actions(verified.production!.entries)).toEqual(["promote"]);

    const rolledBack = await rollbackPromotion(project, promotion.promotionId, { to: productionTarget(undefined, "to") });
    expect(rolledBack.promotionId).toBe(promotion.promotionId);
    expect(await items(prod)).toBe(original);

    await destroySession(project, run.session.id);
    expect(listSessions(project).map((s) => s.id)).not.toContain(run.session.id);

    // The trails a program leaves are the CLI's (test/e2e.test.ts expects snapshot, up, run, diff, approve and promote
    // in staging, promote in production): here every step, in order, keyed, anchored, and nothing unauthenticated.
    const report = await verifyAudit(project);
    assertTrailsIntact(report);
    expect(report.unauthenticated).toEqual([]);
    expect(actions(report.staging.entries)).toEqual(["snapshot", "up", "run-start", "run", "diff", "approve", "promote", "rollback", "down"]);
    expect(actions(readJournal(project))).toEqual(actions(report.staging.entries));
    expect(actions(report.production!.entries)).toEqual(["promote", "rollback"]);
    const entry = (action: string) => report.staging.entries.find((e) => e.action === action)!;
    const source = `production@${prodCluster.cluster.tcpTarget("production").host}:${prodCluster.cluster.port}`;
    expect(entry("snapshot").details).toEqual({ snapshot: manifest.id, source, tables: 1, rulesHash: manifest.rulesHash });
    expect(entry("up").details).toMatchObject({ session: run.session.id, backend: "local", snapshot: manifest.id });
    expect(entry("run").details).toMatchObject({ session: run.session.id, command: psql, exitCode: 0 });
    expect(entry("diff").details).toMatchObject({ diff: diff.id, session: run.session.id, snapshot: manifest.id, verified: true });
    expect(entry("approve")).toMatchObject({ actor: "reviewer", details: { diff: diff.id, approval: approval.id } });
    expect(entry("promote")).toMatchObject({ actor: "releaser", details: { diff: diff.id, promotion: promotion.promotionId, productionEntry: { seq: 1 } } });
    expect(entry("rollback").details).toMatchObject({ promotion: promotion.promotionId, productionEntry: { seq: 2 } });
  }, 240_000);
});
