/**
 * The demo "production" database: a small hotel's guests, bookings, payments,
 * reviews, booking history and website gallery, generated deterministically
 * (the same scale always gives byte-identical tables) and loaded the way
 * pg_dump restores: schema, data through COPY, then keys, indexes, triggers.
 */
import { readFile } from "node:fs/promises";
import type pg from "pg";
import { AirlockError } from "../../src/errors.ts";
import { openClient, type PgTarget, parseTarget, query, withClient } from "../../src/pg/connect.ts";
import { copyIntoNewTable } from "./copy-load.ts";
import { DEMO_TABLES, type DemoRowCounts, type DemoTable, demoRowCounts, validateScale } from "./counts.ts";
import { demoSources, type TableSource } from "./tables/index.ts";

export { DEMO_TABLES, type DemoRowCounts, type DemoTable, demoRowCounts, MAX_SCALE } from "./counts.ts";

/** Progress of one table's load; `done` once its COPY has finished. */
export interface SeedDemoProgress {
  readonly table: string;
  readonly rows: number;
  readonly done: boolean;
}

export interface SeedDemoOptions {
  /** An empty database to load into. */
  readonly target: PgTarget | string;
  /** 1 (the default) gives about 1,000 bookings; 1000 gives 1,000,000. */
  readonly scale?: number;
  readonly onProgress?: (event: SeedDemoProgress) => void;
}

export interface SeedDemoResult {
  readonly scale: number;
  readonly tables: Record<string, number>;
  readonly elapsedMs: number;
}

/** The other objects seed-demo creates, besides the tables; any of them already there means "not empty". */
const DEMO_VIEWS = ["published_gallery"] as const;
const STEP = { step: "seed-demo", searchPath: "public" } as const;
/** Tables load on this many connections at once: the machine this is sized for has two cores. */
const LOAD_CONNECTIONS = 2;

/** Loads the demo dataset at `scale` into an empty database; throws AIRLOCK_DEMO_EXISTS if it is already there. */
export async function seedDemo(options: SeedDemoOptions): Promise<SeedDemoResult> {
  const started = performance.now();
  const scale = validateScale(options.scale ?? 1);
  const counts = demoRowCounts(scale);
  const target = typeof options.target === "string" ? parseTarget(options.target) : options.target;
  const [schemaSql, constraintsSql] = await Promise.all([readSql("schema.sql"), readSql("constraints.sql")]);

  const clients: pg.Client[] = [await openClient(target, STEP)];
  let created = false;
  try {
    await createSchema(clients[0] as pg.Client, target, schemaSql);
    created = true;
    while (clients.length < LOAD_CONNECTIONS) clients.push(await openClient(target, STEP));
    const tables = await loadTables(clients, demoSources(counts), counts, options.onProgress);
    const main = clients[0] as pg.Client;
    // Index builds are the slowest part of the post-data step; give them memory (session only).
    await query(main, "SET maintenance_work_mem = '256MB'");
    await query(main, constraintsSql);
    // A production database has planner statistics; a freshly restored one would not until autovacuum ran.
    await query(main, `ANALYZE ${DEMO_TABLES.join(", ")}`);
    return { scale, tables, elapsedMs: Math.round(performance.now() - started) };
  } catch (e) {
    // Leave the database as it was, so the same command can simply be run again.
    if (created) await dropDemoObjects(target).catch(() => undefined);
    throw e;
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
}

/** Creates the tables after checking, under a lock, that none of the demo objects exist yet. */
async function createSchema(client: pg.Client, target: PgTarget, schemaSql: string): Promise<void> {
  await query(client, "BEGIN");
  try {
    // Two seed-demo runs on one database: the second waits here, then sees the first one's tables.
    await query(client, "SELECT pg_advisory_xact_lock(hashtext('airlock/seed-demo'))");
    const { rows } = await query<{ name: string }>(
      client,
      `SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NOT NULL
       UNION ALL SELECT 'booking_status' WHERE to_regtype('booking_status') IS NOT NULL
       UNION ALL SELECT 'set_updated_at()' WHERE to_regprocedure('set_updated_at()') IS NOT NULL`,
      [[...DEMO_TABLES, ...DEMO_VIEWS]],
    );
    if (rows.length > 0) {
      throw new AirlockError("AIRLOCK_DEMO_EXISTS", `database "${target.database}" already has ${rows.map((r) => r.name).join(", ")}`, {
        hint: "seed-demo loads into an empty database: create a new one (createdb) or drop these objects first",
        details: { database: target.database, existing: rows.map((r) => r.name) },
      });
    }
    await query(client, schemaSql);
    await query(client, "COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw e;
  }
}

/** Streams every table in, biggest first, over the given connections; returns the rows each COPY loaded. */
async function loadTables(
  clients: readonly pg.Client[],
  sources: TableSource[],
  counts: DemoRowCounts,
  onProgress: SeedDemoOptions["onProgress"],
): Promise<Record<DemoTable, number>> {
  const queue = [...sources].sort((a, b) => b.rows * b.columns.length - a.rows * a.columns.length);
  const loaded = {} as Record<DemoTable, number>;
  // One failed COPY cancels the others (CopyFail) instead of letting them run on for nothing.
  const abort = new AbortController();
  async function worker(client: pg.Client): Promise<void> {
    for (let source = queue.shift(); source !== undefined; source = queue.shift()) {
      const table = source.table;
      const rows = await copyIntoNewTable(client, source, { signal: abort.signal, onRows: (n) => onProgress?.({ table, rows: n, done: false }) });
      if (rows !== counts[table]) {
        throw new AirlockError("AIRLOCK_INTERNAL", `COPY loaded ${rows} rows into ${table}, expected ${counts[table]}`, {
          hint: "this is a bug in the demo seeder; please report it",
        });
      }
      loaded[table] = rows;
      onProgress?.({ table, rows, done: true });
    }
  }
  const results = await Promise.allSettled(
    clients.map((client) =>
      worker(client).catch((e: unknown) => {
        abort.abort(e);
        throw e;
      }),
    ),
  );
  // The first failure is the cause; the others are its cancellations.
  if (abort.signal.aborted) throw abort.signal.reason;
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed !== undefined) throw failed.reason;
  return Object.fromEntries(DEMO_TABLES.map((t) => [t, loaded[t]])) as Record<DemoTable, number>;
}

/** Drops what a failed seed-demo created, on a fresh connection (the loading ones may be mid-COPY). */
async function dropDemoObjects(target: PgTarget): Promise<void> {
  await withClient(target, STEP, async (client) => {
    await query(
      client,
      `DROP VIEW IF EXISTS published_gallery;
       DROP TABLE IF EXISTS ${[...DEMO_TABLES].reverse().join(", ")};
       DROP FUNCTION IF EXISTS set_updated_at();
       DROP TYPE IF EXISTS booking_status;`,
    );
  });
}

async function readSql(name: string): Promise<string> {
  return readFile(new URL(`./${name}`, import.meta.url), "utf8");
}
