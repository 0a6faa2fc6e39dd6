/**
 * How a promotion's schema changes are undone, planned in production
 * itself. The promotion reads production's catalog model (real role
 * names, nothing mapped) before and after it applies the diff, and keeps
 * both with the plan from "after" back to "before": recreated objects get
 * their owners, grants, comments, indexes and populated state back, and a
 * table whose column order ALTER TABLE could not restore (a dropped column
 * re-added last) is rebuilt. Rollback first checks that production's schema
 * is still the promoted one, and at the end that it equals the one before
 * the promotion, column order included: an inexact rollback is refused and
 * changes nothing.
 */
import type pg from "pg";
import { compareCatalogs, type CatalogDifference } from "../catalog/compare.ts";
import type { CatalogModel, CatalogObject } from "../catalog/model.ts";
import { columnOrderRebuilds } from "../catalog/column-order.ts";
import { planSchemaChanges, planStatements } from "../catalog/plan.ts";
import { readCatalog } from "../catalog/read.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { ownRowsIn, qualified, writableColumns } from "../pg/table-names.ts";
import { plural } from "../format/plural.ts";

/** The schema part of a rollback: statements around the data, and the tables rebuilt between them. */
export interface ReversePlan {
  readonly before: readonly string[];
  readonly after: readonly string[];
  /** Tables dropped and created again by `before`: their rows are saved first and put back after it. */
  readonly rebuilt?: ReadonlyArray<{ readonly schema: string; readonly table: string }>;
}

/** Production's catalog model around a promotion, kept with it. */
export interface PromotionCatalog {
  readonly before: CatalogModel;
  readonly after: CatalogModel;
}

/** Production's catalog model with every role under its own name (nothing is "the owner" here). */
export function productionCatalog(c: pg.ClientBase): Promise<CatalogModel> {
  return readCatalog(c, { owners: new Set() });
}

/** Plans the way back from `after` to `before`; refuses (before the promotion commits) what could not be undone exactly. */
export function planReverse(after: CatalogModel, before: CatalogModel): ReversePlan {
  const { rebuild, cannot } = columnOrderRebuilds(after, before);
  if (cannot.length > 0) {
    throw new AirlockError(
      "AIRLOCK_ROLLBACK_IMPOSSIBLE",
      `this promotion could not be rolled back exactly, so it was not applied:\n${cannot.map((x) => `  - ${x}`).join("\n")}`,
      {
        hint: "make this schema change by hand (with its own migration and backup), or have the agent leave that table's columns as they are",
        exitCode: EXIT_REFUSED,
        details: { cannot },
      },
    );
  }
  const statements = planStatements(planSchemaChanges(after, before, { rebuild }));
  const rebuilt = [...rebuild]
    .map((id) => before.objects[id])
    .filter((t) => t?.kind === "table")
    .map((t) => ({ schema: t.schema, table: t.name }));
  return { ...statements, ...(rebuilt.length > 0 ? { rebuilt } : {}) };
}

const listed = (differences: readonly CatalogDifference[]) =>
  `${differences
    .slice(0, 20)
    .map((d) => `  - ${d.id}: ${d.difference}`)
    .join("\n")}${differences.length > 20 ? `\n  … and ${differences.length - 20} more` : ""}`;

/** Materialized views refreshed (or emptied) since: an application refreshing its views is not a schema change. */
const populatedOnly = (d: CatalogDifference, model: CatalogModel) => model.objects[d.id]?.kind === "matview" && d.difference === "populated";

/**
 * Checks that production's schema is still the one the promotion left; returns the materialized views
 * whose populated state alone changed since (those keep it).
 */
export async function checkSchemaSincePromotion(c: pg.ClientBase, promoted: CatalogModel, promotionId: string): Promise<Set<string>> {
  const differences = compareCatalogs(await productionCatalog(c), promoted, { columnOrder: true });
  const refreshed = new Set(differences.filter((d) => populatedOnly(d, promoted)).map((d) => d.id));
  const changed = differences.filter((d) => !refreshed.has(d.id));
  if (changed.length === 0) return refreshed;
  throw new AirlockError(
    "AIRLOCK_CONFLICT",
    `production's schema changed since promotion ${promotionId} in ${plural(changed.length, "object")}; nothing was rolled back:\n${listed(changed)}`,
    {
      hint: "undo those schema changes first (or leave the promotion in place): a rollback reverses only what the promotion did",
      exitCode: EXIT_REFUSED,
      details: { changed },
    },
  );
}

/** Checks that the rolled-back schema equals the one before the promotion, column order included; refuses otherwise. */
export async function checkRestoredSchema(c: pg.ClientBase, before: CatalogModel, refreshed: ReadonlySet<string>, promotionId: string): Promise<void> {
  const ignore = (o: CatalogObject, property: string) => property === "populated" && refreshed.has(o.id);
  const differences = compareCatalogs(await productionCatalog(c), before, { columnOrder: true, ignore });
  if (differences.length === 0) return;
  throw new AirlockError(
    "AIRLOCK_ROLLBACK_INEXACT",
    `rolling back promotion ${promotionId} would not give production its schema back exactly, so nothing was rolled back:\n${listed(differences)}`,
    {
      hint: "this is a schema change Airlock cannot reverse exactly yet; please report it with the list above, and reverse it by hand",
      details: { differences },
    },
  );
}

/** Identity columns' sequence positions of the given tables (a rebuild creates their sequences anew). */
async function identityPositions(
  c: pg.ClientBase,
  tables: ReadonlyArray<{ schema: string; table: string }>,
): Promise<Array<{ table: string; column: string; last: string; called: boolean }>> {
  const out: Array<{ table: string; column: string; last: string; called: boolean }> = [];
  for (const t of tables) {
    const name = qualified(t.schema, t.table);
    const cols = await query<{ a: string; s: string }>(
      c,
      "SELECT attname AS a, pg_get_serial_sequence($1, attname) AS s FROM pg_attribute WHERE attrelid = $1::regclass AND attidentity <> '' AND NOT attisdropped",
      [name],
    );
    for (const col of cols.rows) {
      const v = await query<{ last: string; called: boolean }>(c, `SELECT last_value::text AS last, is_called AS called FROM ${col.s}`);
      out.push({ table: name, column: col.a, last: v.rows[0]!.last, called: v.rows[0]!.called });
    }
  }
  return out;
}

/**
 * Saves the rows of the tables the plan rebuilds (as they are after the row restore) in temporary tables,
 * and returns what puts them back once the tables exist again, and what gives identity columns their position.
 */
export async function saveRebuiltRows(c: pg.ClientBase, plan: ReversePlan): Promise<{ refill: () => Promise<number>; restoreIdentities: () => Promise<void> }> {
  const tables = plan.rebuilt ?? [];
  const positions = await identityPositions(c, tables);
  const saved: Array<{ name: string; copy: string; columns: string[] }> = [];
  // Each table's own rows: a table inheriting from it keeps its own.
  const rowsOf = await ownRowsIn(c, tables);
  for (const [i, t] of tables.entries()) {
    const name = qualified(t.schema, t.table);
    const copy = `airlock_rebuilt_${i}`;
    await query(c, `CREATE TEMPORARY TABLE ${copy} ON COMMIT DROP AS SELECT * FROM ${rowsOf(t.schema, t.table)}`);
    saved.push({ name, copy: `pg_temp.${copy}`, columns: await writableColumns(c, name) });
  }
  return {
    refill: async () => {
      let n = 0;
      for (const s of saved) {
        const cols = (await writableColumns(c, s.name))
          .filter((a) => s.columns.includes(a))
          .map(quoteIdent)
          .join(", ");
        const r = await query(
          c,
          cols === "" ? `INSERT INTO ${s.name} SELECT FROM ${s.copy}` : `INSERT INTO ${s.name} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM ${s.copy}`,
        );
        n += r.rowCount ?? 0;
      }
      return n;
    },
    restoreIdentities: async () => {
      for (const p of positions) await query(c, "SELECT setval(pg_get_serial_sequence($1, $2), $3::bigint, $4)", [p.table, p.column, p.last, p.called]);
    },
  };
}
