/**
 * The schema zoo (test/fixtures/wild/zoo.sql): a production database as it
 * is found in the wild, owned by an application role that is not a
 * superuser, driven end to end through the `airlock` CLI as a user runs it
 * (a project directory with `.env` and airlock.config.ts): one snapshot,
 * then, for every agent edit in EDITS, its own session (`up`), the agent's
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
import { compareCatalogs } from "../src/catalog/compare.ts";
import type { CatalogModel, CatalogObject } from "../src/catalog/model.ts";
import { readCatalog } from "../src/catalog/read.ts";
import { type PgTarget, formatUrl, quoteIdent, withClient } from "../src/pg/connect.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";

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
    execFile(process.execPath, [BIN, ...args], { cwd: projectDir, encoding: "utf8", env, timeout: 180_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : null;
      done({ code, stdout, stderr, json: () => JSON.parse(stdout.slice(stdout.indexOf("{"))) });
    });
  });
}

/** What a failed CLI run said, for assertion messages. */
const said = (r: CliResult) => `exit ${r.code}\n${r.stderr}${r.stdout}`;

// ---------------------------------------------------------------------------
// Reading a database.

const USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'";

async function rows(target: PgTarget | string, sql: string, values: unknown[] = []): Promise<Record<string, any>[]> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql, values)).rows);
}

/**
 * Every table's rows as `count:md5` of its rows' text, sorted (so a multiset; in column order, so a moved column
 * shows), and the rows of every populated materialized view (as "matview <name>").
 */
async function checksums(target: PgTarget | string): Promise<Record<string, string>> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => {
    const relations = (
      await c.query(`SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) AS t, k.relkind = 'm' AS matview FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
                      WHERE (k.relkind IN ('r', 'p') OR (k.relkind = 'm' AND k.relispopulated)) AND ${USER_SCHEMAS} ORDER BY 1`)
    ).rows as Array<{ t: string; matview: boolean }>;
    const out: Record<string, string> = {};
    for (const { t, matview } of relations) out[`${matview ? "matview " : ""}${t}`] = (await c.query(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS h FROM ${t} t`)).rows[0].h;
    return out;
  });
}

/** Every relation: kind, owner, its columns in attnum order (dropped ones left out), and whether a matview is populated. */
async function relations(target: PgTarget | string): Promise<Record<string, string>> {
  const r = await rows(
    target,
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) AS rel,
            k.relkind::text || ' owner=' || pg_get_userbyid(k.relowner)
              || ' columns=' || coalesce((SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = k.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
              || CASE WHEN k.relkind = 'm' THEN ' populated=' || k.relispopulated::text ELSE '' END AS what
       FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
      WHERE k.relkind IN ('r', 'p', 'v', 'm', 'f') AND ${USER_SCHEMAS} ORDER BY 1`,
  );
  return Object.fromEntries(r.map((x) => [x.rel, x.what]));
}

/** Every index, by name, with its definition. */
async function indexes(target: PgTarget | string): Promise<Record<string, string>> {
  const r = await rows(target, `SELECT quote_ident(schemaname) || '.' || quote_ident(indexname) AS i, indexdef AS d FROM pg_indexes n WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'airlock') ORDER BY 1`);
  return Object.fromEntries(r.map((x) => [x.i, x.d]));
}

/** The catalog model; `owners` are the roles mapped to the owner (none: every role keeps its name). */
async function catalog(target: PgTarget | string, owners: readonly string[] = []): Promise<CatalogModel> {
  return withClient(target, { step: "test" }, (c) => readCatalog(c, { owners: new Set(owners) }));
}

/** Roles that own objects in the database (the application role or the agent, and whoever created the extension). */
async function ownersOf(target: PgTarget | string): Promise<string[]> {
  const r = await rows(
    target,
    `SELECT DISTINCT pg_get_userbyid(o) AS r FROM (
       SELECT k.relowner AS o FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE ${USER_SCHEMAS}
       UNION SELECT extowner FROM pg_extension WHERE extname <> 'plpgsql') x`,
  );
  return r.map((x) => x.r as string);
}

/** The whole state a rollback must give back. */
interface State {
  readonly catalog: CatalogModel;
  readonly relations: Record<string, string>;
  readonly indexes: Record<string, string>;
  readonly checksums: Record<string, string>;
}

async function stateOf(target: PgTarget): Promise<State> {
  return { catalog: await catalog(target), relations: await relations(target), indexes: await indexes(target), checksums: await checksums(target) };
}

/** Values of every sequence (last_value, is_called), to put back after probing inserts. */
async function sequenceValues(target: PgTarget): Promise<Array<{ seq: string; v: string; called: boolean }>> {
  const names = await rows(target, `SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) AS seq FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.relkind = 'S' AND ${USER_SCHEMAS}`);
  const out: Array<{ seq: string; v: string; called: boolean }> = [];
  for (const { seq } of names) {
    const [s] = await rows(target, `SELECT last_value::text AS v, is_called AS called FROM ${seq}`);
    out.push({ seq, v: s!.v, called: s!.called });
  }
  return out;
}

// ---------------------------------------------------------------------------
// The edits.

/** The next insert an application makes into each table: every key and default left to the table. */
const NEXT_INSERT: Record<string, string> = {
  "shop.products": "INSERT INTO shop.products (sku, title, price) VALUES ('ZZ-999', 'Probe', 1.00)",
  "shop.product_history": "INSERT INTO shop.product_history (product_id, op) VALUES (1, 'PROBE')",
  "shop.orders": "INSERT INTO shop.orders (placed_on) VALUES ('2025-06-01')",
  '"Sales"."Order Lines"': `INSERT INTO "Sales"."Order Lines" (order_id, product_id, unit_price) VALUES (1, 1, 1.00)`,
  "shop.events": "INSERT INTO shop.events (happened_on, detail) VALUES ('2025-06-01', 'probe')",
  "shop.events_2024": "INSERT INTO shop.events_2024 (happened_on, detail) VALUES ('2024-06-01', 'probe')",
  "shop.events_2025": "INSERT INTO shop.events_2025 (happened_on, detail) VALUES ('2025-06-01', 'probe')",
  "shop.events_2026": "INSERT INTO shop.events_2026 (happened_on, detail) VALUES ('2026-06-01', 'probe')",
  "shop.events_other": "INSERT INTO shop.events_other (happened_on, detail) VALUES ('2027-06-01', 'probe')",
  "shop.notes": "INSERT INTO shop.notes (written_on) VALUES ('2025-06-01')",
  "shop.order_notes": "INSERT INTO shop.order_notes (written_on, order_id) VALUES ('2025-06-01', 1)",
  "shop.stock_moves": "INSERT INTO shop.stock_moves (product_id, delta, moved_on) VALUES (1, 1, '2025-06-01')",
};

interface Edit {
  /** Session name (lowercase, dashes). */
  readonly name: string;
  /** What the agent does, in words (for test names). */
  readonly title: string;
  /** The agent's SQL in its work database. */
  readonly sql: string;
  /** Tables whose rows or shape the edit changes (production's next insert into each must succeed). */
  readonly touched: readonly string[];
  /** Run in production after the snapshot, before promotion (production moving on meanwhile). */
  readonly production?: string;
  /** `promote --rekey`; the columns of each touched table whose values are keys (compared apart). */
  readonly rekey?: Readonly<Record<string, readonly string[]>>;
  /** The promotion must be refused up front with this code (its rollback could not be exact), production unchanged. */
  readonly refused?: string;
}

const EDITS: readonly Edit[] = [
  {
    name: "update",
    title: "update rows (triggers stamp updated_at and write history; the mixed-case schema, a keyless table, a partition)",
    sql: `UPDATE shop.products SET price = 13.50, title = 'Hammer 500 g (neu) ✓' WHERE id = 1;
          UPDATE "Sales"."Order Lines" SET "Qty" = 3, "Line Remark" = 'geändert — 変更' WHERE line_id = 1003;
          UPDATE shop.orders SET status = 'closed' WHERE id = 2;
          UPDATE shop.stock_moves SET reason = 'Bruch' WHERE product_id = 7 AND delta = -10;
          UPDATE shop.events SET detail = 'Lieferung 📦' WHERE id = 4;`,
    touched: ["shop.products", "shop.product_history", '"Sales"."Order Lines"', "shop.orders", "shop.stock_moves", "shop.events", "shop.events_2025"],
  },
  {
    name: "insert",
    title: "insert rows (identity, serial, a nextval default without OWNED BY, a cycle of deferred keys, partitions, a keyless table)",
    sql: `INSERT INTO shop.products (sku, title, category, price, qty, updated_at) VALUES ('KI-002', 'Teekanne 急須 🍵', 'kitchen', 32.00, 5, '2025-03-10 09:00+01');
          BEGIN;
          INSERT INTO shop.orders (placed_on, channel, remark, first_line_id, updated_at) VALUES ('2025-03-10', 'partner', 'Neu — 新規 ✨', 1007, '2025-03-10 09:05+01');
          INSERT INTO "Sales"."Order Lines" (order_id, product_id, "Qty", unit_price, "Line Remark") VALUES (5, 8, 2, 32.00, 'zweimal'), (5, 1, 1, 12.90, NULL);
          COMMIT;
          INSERT INTO shop.events (happened_on, kind, detail) VALUES ('2025-03-10', 'order', 'Bestellung 5'), ('2024-06-01', 'backfill', 'nachgetragen');
          INSERT INTO shop.stock_moves VALUES (8, 5, '2025-03-10', 'Wareneingang 入荷'), (8, 5, '2025-03-10', 'Wareneingang 入荷');`,
    touched: ["shop.products", "shop.orders", '"Sales"."Order Lines"', "shop.events", "shop.events_2024", "shop.events_2025", "shop.stock_moves"],
  },
  {
    name: "delete",
    title: "delete rows (a line of an order, one of two equal keyless rows, a product with history, a row of the default partition)",
    sql: `DELETE FROM "Sales"."Order Lines" WHERE line_id = 1004;
          DELETE FROM shop.stock_moves WHERE ctid = (SELECT min(ctid) FROM shop.stock_moves WHERE product_id = 3 AND delta = -1);
          DELETE FROM shop.products WHERE id = 4;
          DELETE FROM shop.events WHERE id = 5;`,
    touched: ['"Sales"."Order Lines"', "shop.stock_moves", "shop.products", "shop.product_history", "shop.events", "shop.events_other"],
  },
  {
    name: "inheritance",
    title: "insert, update and delete rows of a parent table and of the table inheriting from it",
    sql: `INSERT INTO shop.notes (body) VALUES ('Neue Notiz — メモ');
          INSERT INTO shop.order_notes (body, order_id) VALUES ('Bitte klingeln 🔔', 2);
          UPDATE shop.notes SET body = 'Regal 3 umgeräumt ✓' WHERE id = 1;
          UPDATE shop.order_notes SET body = 'Rückruf erledigt ☎' WHERE id = 3;
          DELETE FROM shop.order_notes WHERE id = 4;`,
    touched: ["shop.notes", "shop.order_notes"],
  },
  {
    name: "add-column",
    title: "add a column to the table with views over it",
    sql: `ALTER TABLE shop.products ADD COLUMN weight_g integer NOT NULL DEFAULT 0;
          UPDATE shop.products SET weight_g = 500 WHERE id = 1;`,
    touched: ["shop.products", "shop.product_history"],
  },
  {
    name: "add-column-views",
    title: "add a column and show it in two of the views over the table",
    sql: `ALTER TABLE shop.products ADD COLUMN origin text;
          CREATE OR REPLACE VIEW shop.product_list AS SELECT id, sku, title, category, price, origin FROM shop.products;
          CREATE OR REPLACE VIEW "Sales"."Product Catalog" AS SELECT p.id, p.title AS "Title", p.category, p.origin FROM shop.products p;
          UPDATE shop.products SET origin = 'DE' WHERE id IN (1, 2);`,
    touched: ["shop.products", "shop.product_history"],
  },
  {
    name: "add-column-partitioned",
    title: "add a column to the partitioned table and to the inheritance parent, and add a partition",
    sql: `ALTER TABLE shop.events ADD COLUMN source text NOT NULL DEFAULT 'manual';
          CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
          INSERT INTO shop.events (happened_on, kind, detail, source) VALUES ('2026-02-01', 'stocktake', 'Inventur 2026', 'scanner');
          ALTER TABLE shop.notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;`,
    touched: ["shop.events", "shop.events_2024", "shop.events_2025", "shop.events_2026", "shop.events_other", "shop.notes", "shop.order_notes"],
  },
  {
    name: "drop-column",
    title: "drop a column from the middle of the table (it has a comment and a column grant)",
    sql: `ALTER TABLE shop.products DROP COLUMN legacy_ref;`,
    touched: ["shop.products"],
  },
  {
    name: "drop-column-partitioned",
    title: "drop an indexed column (with a default) from the middle of the partitioned table",
    sql: `ALTER TABLE shop.events DROP COLUMN kind;`,
    touched: ["shop.events", "shop.events_2024", "shop.events_2025", "shop.events_other"],
    // Putting the column back in its place would mean rebuilding the partitioned table and every partition.
    refused: "AIRLOCK_ROLLBACK_IMPOSSIBLE",
  },
  {
    name: "drop-column-inherited",
    title: "drop a column (NOT NULL, with a default) from the middle of the inheritance parent",
    sql: `ALTER TABLE shop.notes DROP COLUMN body;`,
    touched: ["shop.notes", "shop.order_notes"],
    refused: "AIRLOCK_ROLLBACK_IMPOSSIBLE",
  },
  {
    name: "add-index",
    title: "add an index, and a partial one with a quoted name in the mixed-case schema",
    sql: `CREATE INDEX products_category_price_idx ON shop.products (category, price);
          CREATE INDEX "Order Lines by product" ON "Sales"."Order Lines" (product_id) WHERE "Qty" > 1;`,
    touched: ["shop.products", '"Sales"."Order Lines"'],
  },
  {
    name: "change-view",
    title: "change a view (with an INSTEAD OF trigger, a column comment and grants) that a view and two materialized views read, and a view that calls a user function",
    sql: `CREATE OR REPLACE VIEW shop.product_list AS SELECT id, sku, title, category, price, qty FROM shop.products;
          CREATE OR REPLACE VIEW shop.priced_products AS SELECT id, title, price, shop.gross(price) AS gross_price FROM shop.products WHERE qty > 1;`,
    touched: ["shop.products"],
  },
  {
    name: "rekey",
    title: "rekeyed inserts (promote --rekey) after production used the same keys: a product, an order and its lines pointing at each other",
    production: `INSERT INTO shop.products (sku, title, price, updated_at) VALUES ('TL-900', 'Zange', 9.90, '2025-03-09 12:00+01');
                 BEGIN;
                 INSERT INTO shop.orders (placed_on, remark, first_line_id, updated_at) VALUES ('2025-03-09', 'direkt in Produktion', 1007, '2025-03-09 12:00+01');
                 INSERT INTO "Sales"."Order Lines" (order_id, product_id, unit_price) VALUES (5, 8, 9.90);
                 COMMIT;`,
    sql: `INSERT INTO shop.products (sku, title, category, price, qty, updated_at) VALUES ('KI-003', 'Reiskocher 炊飯器', 'kitchen', 59.00, 2, '2025-03-10 09:00+01');
          BEGIN;
          INSERT INTO shop.orders (placed_on, channel, remark, first_line_id, updated_at) VALUES ('2025-03-10', 'web', 'vom Agenten 🤖', 1007, '2025-03-10 09:05+01');
          INSERT INTO "Sales"."Order Lines" (order_id, product_id, "Qty", unit_price, "Line Remark") VALUES (5, 8, 1, 59.00, 'neu'), (5, 2, 2, 19.50, NULL);
          COMMIT;`,
    touched: ["shop.products", "shop.orders", '"Sales"."Order Lines"'],
    rekey: { "shop.products": ["id"], "shop.orders": ["id", "first_line_id"], '"Sales"."Order Lines"': ["line_id", "order_id", "product_id"] },
  },
  {
    name: "partition-move",
    title: "move rows between partitions (2024 → 2025, 2025 → the default partition)",
    sql: `UPDATE shop.events SET happened_on = '2025-02-01' WHERE id = 2;
          UPDATE shop.events SET happened_on = '2026-06-30' WHERE id = 4;`,
    touched: ["shop.events", "shop.events_2024", "shop.events_2025", "shop.events_other"],
  },
];

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

/** Catalog differences, ignoring what staging changes on purpose: the database's own privileges and role-level settings. */
function differences(actual: CatalogModel, expected: CatalogModel, sequenceValues = false): string[] {
  const ignore = (o: CatalogObject, property: string) => (o.kind === "database" && property !== "comment") || (o.kind === "setting" && o.scope === "role");
  return compareCatalogs(actual, expected, { ignore, sequenceValues }).map(
    (d) => `${d.id}: ${d.difference}${d.difference === "missing" || d.difference === "extra" ? "" : ` — expected ${describeObject(expected.objects[d.id])}, got ${describeObject(actual.objects[d.id])}`}`,
  );
}

function describeObject(o: CatalogObject | undefined): string {
  if (o === undefined) return "(none)";
  const { id: _id, ...rest } = o as CatalogObject & Record<string, unknown>;
  return JSON.stringify(rest);
}

/** Entries of two records that differ, as "key: expected → actual". */
function recordDiff(actual: Record<string, string>, expected: Record<string, string>): string[] {
  const keys = [...new Set([...Object.keys(actual), ...Object.keys(expected)])].sort();
  return keys.filter((k) => actual[k] !== expected[k]).map((k) => `${k}: ${expected[k] ?? "(none)"} → ${actual[k] ?? "(none)"}`);
}

/** Relations without their owners (staging's are the agent's). */
const ownerless = (r: Record<string, string>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.replace(/ owner=\S+/, "")]));

/** Rows of a table as a sorted multiset of JSON with the given columns left out. */
async function rowsWithout(target: PgTarget | string, table: string, leaveOut: readonly string[]): Promise<string[]> {
  const minus = leaveOut.map((c) => ` - '${c}'`).join("");
  return (await rows(target, `SELECT (to_jsonb(t)${minus})::text AS r FROM ${table} t ORDER BY 1`)).map((x) => x.r as string);
}

/** `a` less one of each element of `b` (multisets of strings), sorted. */
function without(a: readonly string[], b: readonly string[]): string[] {
  const left = [...a];
  for (const x of b) {
    const i = left.indexOf(x);
    if (i >= 0) left.splice(i, 1);
  }
  return left.sort();
}

/** After promotion: production equals work on the touched objects, and nothing else changed. */
async function promotionProblems(edit: Edit, prod: PgTarget, work: string, before: State, rekeyBefore: Record<string, string[]>): Promise<string[]> {
  const problems: string[] = [];
  // The whole catalog model; production's application role and the agent are the same owner.
  const prodOwners = await ownersOf(prod);
  problems.push(...differences(await catalog(prod, prodOwners), await catalog(work, [...prodOwners, ...(await ownersOf(work))])).map((x) => `catalog ${x}`));
  // Column order and populated state (not in the model's comparison), and indexes, by name.
  const prodRel = await relations(prod);
  problems.push(...recordDiff(ownerless(prodRel), ownerless(await relations(work))).map((x) => `relation ${x}`));
  problems.push(...recordDiff(await indexes(prod), await indexes(work)).map((x) => `index ${x}`));
  // Every relation, recreated or not, still belongs to the application role.
  problems.push(...Object.entries(prodRel).filter(([, v]) => !v.includes(" owner=zoo_app ")).map(([k, v]) => `owner of ${k} is not zoo_app: ${v}`));
  // Rows: every touched table equals work (with --rekey: its rows before plus the agent's, keys aside); every other table is as it was.
  const [prodSums, workSums] = [await checksums(prod), await checksums(work)];
  for (const t of Object.keys({ ...prodSums, ...before.checksums }).filter((x) => !x.startsWith("matview "))) {
    if (!edit.touched.includes(t)) {
      if (prodSums[t] !== before.checksums[t]) problems.push(`rows of ${t} changed although the edit did not touch it: ${before.checksums[t]} → ${prodSums[t]}`);
    } else if (edit.rekey === undefined && prodSums[t] !== workSums[t]) {
      problems.push(`rows of ${t} differ from work: work ${workSums[t]}, production ${prodSums[t]}`);
    }
  }
  if (edit.rekey !== undefined) {
    for (const [table, keys] of Object.entries(edit.rekey)) {
      const inserted = without(await rowsWithout(work, table, keys), await rowsWithout(production, table, keys));
      const expected = [...rekeyBefore[table]!, ...inserted].sort();
      const actual = await rowsWithout(prod, table, keys);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) problems.push(`rows of ${table} (keys aside): missing ${JSON.stringify(without(expected, actual))}, extra ${JSON.stringify(without(actual, expected))}`);
    }
    const linked = await rows(prod, `SELECT count(*)::int AS n FROM shop.orders o JOIN "Sales"."Order Lines" l ON l.line_id = o.first_line_id AND l.order_id = o.id JOIN shop.products p ON p.id = l.product_id WHERE o.remark = 'vom Agenten 🤖' AND p.sku = 'KI-003'`);
    if (linked[0]!.n !== 1) problems.push("the rekeyed order, its first line and the new product do not point at each other");
  }
  return problems;
}

/** Production's next insert into every touched table, each in a savepoint, all rolled back; the sequences they advanced are put back. */
async function nextInsertProblems(edit: Edit, prod: PgTarget): Promise<string[]> {
  const seqs = await sequenceValues(prod);
  const failures: string[] = [];
  await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    await c.query("BEGIN");
    for (const t of edit.touched) {
      const sql = NEXT_INSERT[t];
      if (sql === undefined) throw new Error(`no next insert for ${t}`);
      await c.query("SAVEPOINT probe");
      try {
        await c.query(sql);
        await c.query("RELEASE SAVEPOINT probe");
      } catch (e) {
        failures.push(`${t}: ${(e as Error).message}`);
        await c.query("ROLLBACK TO SAVEPOINT probe");
      }
    }
    await c.query("ROLLBACK");
    // nextval is not transactional: the sequences go back to where the promotion left them.
    for (const q of seqs) await c.query("SELECT setval($1::regclass, $2::bigint, $3)", [q.seq, q.v, q.called]);
  });
  return failures;
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
    const promote = approve.code !== 0 ? approve : await airlockAsync("promote", diffId, "--to", prod.url, "--by", "zoo-test", "--json", ...(edit.rekey === undefined ? [] : ["--rekey"]));
    if (edit.refused !== undefined && approve.code === 0) {
      // Refused up front: exit 2 with the code, and production (outside the airlock schema) exactly as before.
      const now = await stateOf(prod.target);
      promoted = {
        problems: [
          ...(promote.code === 2 && said(promote).includes(edit.refused) ? [] : [`expected ${edit.refused} (exit 2), got exit ${promote.code}: ${said(promote)}`]),
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
    promoted = { problems: [...(promotion.confirmed === true ? [] : ["the promoted rows did not read back as the diff wrote them (confirmed: false)"]), ...(await promotionProblems(edit, prod.target, work, before, rekeyBefore))] };
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
    return { verified: fill(r.verified), promoted: fill(r.promoted), nextInsert: fill(r.nextInsert), rollbackSchema: fill(r.rollbackSchema), rollbackRows: fill(r.rollbackRows) };
  } finally {
    await airlockAsync("down", edit.name);
  }
}

/** Runs `fn` over `items`, at most `limit` at once; results in order. */
function limited<T, R>(items: readonly T[], limit: number, fn: (x: T) => Promise<R>): Array<Promise<R>> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return items.map(async (x) => {
    if (running >= limit) await new Promise<void>((res) => waiting.push(res));
    running++;
    try {
      return await fn(x);
    } finally {
      running--;
      waiting.shift()?.();
    }
  });
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
      it(`a promotion whose rollback could not be exact is refused up front (${edit.refused}), production unchanged: ${edit.name}`, async () => holds((await result()).promoted), WAIT);
      return;
    }
    it(`promotion makes production equal work on the touched objects and changes nothing else: ${edit.name}`, async () => holds((await result()).promoted), WAIT);
    it(`production's next default insert into every touched table succeeds after promotion: ${edit.name}`, async () => holds((await result()).nextInsert), WAIT);
    it(`rollback restores the whole schema exactly (catalog model, column order, populated state, indexes): ${edit.name}`, async () => holds((await result()).rollbackSchema), WAIT);
    it(`rollback restores every table's rows exactly: ${edit.name}`, async () => holds((await result()).rollbackRows), WAIT);
  });
}
