/**
 * The schema zoo (test/fixtures/wild/zoo.sql): a production database as it
 * is found in the wild, owned by an application role that is not a
 * superuser, driven end to end through the `airlock` CLI as a user runs it
 * (a project directory with `.env` and airlock.config.ts): one snapshot,
 * then, for every agent edit in EDITS
 * (test/fixtures/wild/zoo-edits.ts), its own session (`up`), the agent's
 * SQL on its work database, `diff`, `approve` (every danger hazard accepted
 * by name), `promote --to` and `rollback --to`.
 *
 * For every edit:
 * - the diff is verified (`airlock diff --json` says so);
 * - after promotion, production equals work: the whole catalog model (owners
 *   mapped: production's application role and the agent stand for the same
 *   owner), the column order of every relation, the populated state of every
 *   materialized view, every index, and the rows of every touched table;
 *   every other table's rows are as they were, and every relation still
 *   belongs to the application role;
 * - production's next default insert into every touched table succeeds (in
 *   a transaction that is rolled back; the sequences it advanced are put
 *   back, so that the rollback sees them as the promotion left them);
 * - after rollback, production's catalog model (sequence values included),
 *   the column order of every relation, the populated state of every
 *   materialized view, every index, and the checksum of every table's (and
 *   populated materialized view's) rows equal the state before promotion.
 *
 * Each edit promotes into its own copy of production (`CREATE DATABASE …
 * TEMPLATE production`: the same rows byte for byte, so the snapshot's
 * conflict checks hold), so that what one rollback leaves behind cannot
 * spoil another edit's comparisons, and the edits can run four at a time.
 * Promotion and rollback connect as the application role, which owns every
 * object; the snapshot is taken with PROD_DATABASE_URL, the cluster's
 * superuser. Each step's findings are collected while the edits run and
 * asserted by one test per invariant and edit.
 */
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgTarget, formatUrl, quoteIdent } from "../src/pg/connect.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";
import { rows, checksums, relations, indexes, catalog, ownersOf, stateOf, differences, recordDiff, ownerless, rowsWithout } from "./helpers/database-state.ts";
import { limited, nextInsertProblems, promotionProblems } from "./helpers/zoo-checks.ts";
import { type Edit, EDITS } from "./fixtures/wild/zoo-edits.ts";

const BIN = resolve("bin/airlock.mjs");
const SECRET = "zoo-test-secret-0123456789abcdef";
const APP_PASSWORD = "zoo-app-Pw-4711";
const FIXTURE = readFileSync(resolve("test/fixtures/wild/zoo.sql"), "utf8");

let prodCluster: TestCluster;
/** The production the snapshot is taken from (superuser target); each edit promotes into a copy of it. */
let production: PgTarget;
let projectDir: string;
let env: NodeJS.ProcessEnv;

// ---------------------------------------------------------------------------
// The CLI.

interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  json(): any;
}

/** Runs the CLI in the project directory without blocking, so that several edits can run at once. */
function airlockAsync(...args: string[]): Promise<CliResult> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd: projectDir, encoding: "utf8", env, timeout: 180_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
        done({ code, stdout, stderr, json: () => JSON.parse(stdout.slice(stdout.indexOf("{"))) });
      },
    );
  });
}

/** What a failed CLI run said, for assertion messages. */
const said = (r: CliResult) => `exit ${r.code}\n${r.stderr}${r.stdout}`;

// ---------------------------------------------------------------------------
// One edit, start to end.

/** What one step found: its problems (none: the invariant holds), or why it was not reached. */
type Outcome = { readonly problems: readonly string[] } | { readonly notReached: string };

interface EditResult {
  readonly verified: Outcome;
  readonly promoted: Outcome;
  readonly nextInsert: Outcome;
  readonly rollbackSchema: Outcome;
  readonly rollbackRows: Outcome;
}

/** A copy of production for one edit, owned by the application role, and the URL the application role reaches it by. */
async function productionCopy(name: string): Promise<{ target: PgTarget; url: string }> {
  const db = `prod_${name.replace(/-/g, "_")}`;
  // CREATE DATABASE … TEMPLATE takes a lock on the template: one at a time.
  await serially(() => rows(prodCluster.cluster.adminTarget(), `CREATE DATABASE ${quoteIdent(db)} TEMPLATE production OWNER zoo_app`));
  const tcp = prodCluster.cluster.tcpTarget(db);
  const url = formatUrl({ host: tcp.host, port: tcp.port, database: db, user: "zoo_app", password: APP_PASSWORD }, true);
  return { target: prodCluster.cluster.adminTarget(db), url };
}

let queue: Promise<unknown> = Promise.resolve();
function serially<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn, fn);
  queue = next.catch(() => undefined);
  return next;
}

async function runEdit(edit: Edit): Promise<EditResult> {
  let verified: Outcome = { notReached: "not started" };
  let promoted: Outcome = { notReached: "the diff was not verified" };
  let nextInsert: Outcome = { notReached: "the diff was not verified" };
  let rollbackSchema: Outcome = { notReached: "the diff was not verified" };
  let rollbackRows: Outcome = { notReached: "the diff was not verified" };
  const result = () => ({ verified, promoted, nextInsert, rollbackSchema, rollbackRows });
  try {
    if (snapshotFailure !== undefined) {
      verified = { notReached: `no snapshot: ${snapshotFailure}` };
      return result();
    }
    const prod = await productionCopy(edit.name);
    if (edit.production !== undefined) await rows(prod.target, edit.production);

    // Session, agent, diff.
    const up = await airlockAsync("up", "--name", edit.name, "--json");
    if (up.code !== 0) {
      verified = { problems: [`airlock up: ${said(up)}`] };
      return result();
    }
    const work = up.json().url as string;
    await rows(work, edit.sql);
    const d = await airlockAsync("diff", edit.name, "--json");
    const out = d.stdout.includes("{") ? d.json() : undefined;
    if (out?.verified !== true || d.code !== 0) {
      verified = { problems: [`airlock diff: ${out?.verification === undefined ? said(d) : JSON.stringify(out.verification)}`] };
      return result();
    }
    verified = { problems: [] };
    const diffId = (out.id as string).slice(0, 12);
    const unreached = (why: string) => ({ notReached: why });

    // Approval (every danger accepted by name) and promotion, with production's state before it.
    const dangers = [...new Set((out.hazards as Array<{ code: string; severity: string }>).filter((h) => h.severity === "danger").map((h) => h.code))];
    const approve = await airlockAsync("approve", diffId, "--by", "reviewer", "--yes", ...(dangers.length > 0 ? ["--accept", ...dangers] : []));
    const before = await stateOf(prod.target);
    const rekeyBefore: Record<string, string[]> = {};
    for (const [table, keys] of Object.entries(edit.rekey ?? {})) rekeyBefore[table] = await rowsWithout(prod.target, table, keys);
    const promote =
      approve.code !== 0
        ? approve
        : await airlockAsync("promote", diffId, "--to", prod.url, "--by", "zoo-test", "--json", ...(edit.rekey === undefined ? [] : ["--rekey"]));
    if (edit.refused !== undefined && approve.code === 0) {
      // Refused up front: exit 2 with the code, and production (outside the airlock schema) exactly as before.
      const now = await stateOf(prod.target);
      promoted = {
        problems: [
          ...(promote.code === 2 && said(promote).includes(edit.refused)
            ? []
            : [`expected ${edit.refused} (exit 2), got exit ${promote.code}: ${said(promote)}`]),
          ...differences(now.catalog, before.catalog, true).map((x) => `catalog ${x}`),
          ...recordDiff(now.relations, before.relations).map((x) => `relation ${x}`),
          ...recordDiff(now.checksums, before.checksums).map((x) => `rows of ${x}`),
        ],
      };
      return result();
    }
    if (promote.code !== 0) {
      promoted = { problems: [`airlock ${approve.code !== 0 ? "approve" : "promote"}: ${said(promote)}`] };
      nextInsert = rollbackSchema = rollbackRows = unreached("the promotion failed");
      return result();
    }
    const promotion = promote.json();
    promoted = {
      problems: [
        ...(promotion.confirmed === true ? [] : ["the promoted rows did not read back as the diff wrote them (confirmed: false)"]),
        ...(await promotionProblems(edit, production, prod.target, work, before, rekeyBefore)),
      ],
    };
    nextInsert = { problems: await nextInsertProblems(edit, prod.target) };

    // Rollback, and production as it was before the promotion.
    const rollback = await airlockAsync("rollback", promotion.promotionId as string, "--to", prod.url, "--by", "zoo-test", "--json");
    if (rollback.code !== 0) {
      rollbackSchema = { problems: [`airlock rollback: ${said(rollback)}`] };
      rollbackRows = unreached("the rollback failed");
      return result();
    }
    const after = await stateOf(prod.target);
    rollbackSchema = {
      problems: [
        ...differences(after.catalog, before.catalog, true).map((x) => `catalog ${x}`),
        ...recordDiff(after.relations, before.relations).map((x) => `relation ${x}`),
        ...recordDiff(after.indexes, before.indexes).map((x) => `index ${x}`),
      ],
    };
    rollbackRows = { problems: recordDiff(after.checksums, before.checksums).map((x) => `rows of ${x}`) };
    return result();
  } catch (e) {
    const why = `error: ${(e as Error).stack ?? String(e)}`;
    const r = result();
    const fill = (o: Outcome): Outcome => ("notReached" in o ? { problems: [why] } : o);
    return {
      verified: fill(r.verified),
      promoted: fill(r.promoted),
      nextInsert: fill(r.nextInsert),
      rollbackSchema: fill(r.rollbackSchema),
      rollbackRows: fill(r.rollbackRows),
    };
  } finally {
    await airlockAsync("down", edit.name);
  }
}

// ---------------------------------------------------------------------------

let snapshotFailure: string | undefined;
let initRules: CliResult;
let snapshot: CliResult;
const results = new Map<string, Promise<EditResult>>();

beforeAll(async () => {
  prodCluster = await startTestCluster("zoo-prod");
  production = await prodCluster.createDatabase("production");
  await rows(production, FIXTURE);
  await rows(prodCluster.cluster.adminTarget(), `ALTER ROLE zoo_app LOGIN PASSWORD '${APP_PASSWORD}'`);
  projectDir = testClusterDir("zoo-project");
  mkdirSync(projectDir, { recursive: true });
  chmodSync(projectDir, 0o755);
  // As a user sets it up: the secret and the production URL (here the cluster's superuser) in .env.
  writeFileSync(join(projectDir, ".env"), `PROD_DATABASE_URL=${formatUrl(prodCluster.cluster.tcpTarget("production"), true)}\nAIRLOCK_SECRET=${SECRET}\n`);
  writeFileSync(join(projectDir, "airlock.config.ts"), `export default { promote: { lockTimeout: "10s", statementTimeout: "120s" } };\n`);
  env = { ...process.env };
  delete env.AIRLOCK_SECRET;
  delete env.PROD_DATABASE_URL;
  initRules = await airlockAsync("snapshot", "--init-rules", "--json");
  snapshot = await airlockAsync("snapshot", "--json");
  if (snapshot.code !== 0) snapshotFailure = said(snapshot);
  // No `airlock cluster start` first: four first `airlock up` at once create the staging cluster once between them.
  // Every edit runs on its own session and its own copy of production: four at a time.
  const runs = limited(EDITS, 4, runEdit);
  EDITS.forEach((e, i) => results.set(e.name, runs[i]!));
}, 300_000);

afterAll(async () => {
  await Promise.allSettled(results.values());
  if (projectDir !== undefined) {
    await airlockAsync("cluster", "destroy", "--erase");
    rmSync(projectDir, { recursive: true, force: true });
  }
  await prodCluster?.close();
}, 300_000);

describe("the schema zoo snapshots as it is", () => {
  it("`snapshot --init-rules` finds no personal data, and `airlock snapshot` captures with a clean leak scan", () => {
    expect(initRules.code, said(initRules)).toBe(0);
    expect(initRules.json().columns).toEqual([]);
    expect(snapshot.code, said(snapshot)).toBe(0);
    expect(snapshot.json().leakScan.ok).toBe(true);
  });

  it("a fresh session's work database equals production: every table's rows, the catalog model (sequence values too), column order, populated state and indexes", async () => {
    expect(snapshotFailure).toBeUndefined();
    const up = await airlockAsync("up", "--name", "pristine", "--json");
    expect(up.code, said(up)).toBe(0);
    const work = up.json().url as string;
    try {
      const owners = await ownersOf(production);
      const problems = [
        ...differences(await catalog(work, [...owners, ...(await ownersOf(work))]), await catalog(production, owners), true).map((x) => `catalog ${x}`),
        ...recordDiff(ownerless(await relations(work)), ownerless(await relations(production))).map((x) => `relation ${x}`),
        ...recordDiff(await indexes(work), await indexes(production)).map((x) => `index ${x}`),
        ...recordDiff(await checksums(work), await checksums(production)).map((x) => `rows of ${x}`),
      ];
      expect(problems).toEqual([]);
    } finally {
      await airlockAsync("down", "pristine");
    }
  }, 120_000);
});

/** Fails with the step's problems, or because it was not reached. */
function holds(o: Outcome): void {
  if ("notReached" in o) throw new Error(`not reached: ${o.notReached}`);
  expect(o.problems).toEqual([]);
}

const WAIT = 400_000;
for (const edit of EDITS) {
  describe(`${edit.name}: ${edit.title}`, () => {
    const result = () => results.get(edit.name)!;
    it(`the diff is verified: ${edit.name}`, async () => holds((await result()).verified), WAIT);
    if (edit.refused !== undefined) {
      it(
        `a promotion whose rollback could not be exact is refused up front (${edit.refused}), production unchanged: ${edit.name}`,
        async () => holds((await result()).promoted),
        WAIT,
      );
      return;
    }
    it(
      `promotion makes production equal work on the touched objects and changes nothing else: ${edit.name}`,
      async () => holds((await result()).promoted),
      WAIT,
    );
    it(
      `production's next default insert into every touched table succeeds after promotion: ${edit.name}`,
      async () => holds((await result()).nextInsert),
      WAIT,
    );
    it(
      `rollback restores the whole schema exactly (catalog model, column order, populated state, indexes): ${edit.name}`,
      async () => holds((await result()).rollbackSchema),
      WAIT,
    );
    it(`rollback restores every table's rows exactly: ${edit.name}`, async () => holds((await result()).rollbackRows), WAIT);
  });
}
