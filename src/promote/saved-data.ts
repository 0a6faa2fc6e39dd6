/**
 * What a promotion keeps so it can be rolled back exactly and checked: the
 * data of every table or column the diff drops (copied into the airlock
 * schema before the DDL runs), the pre- and post-images of the rows it
 * updates, deletes or inserts (airlock.row_images), and, after commit, the
 * read-back that confirms the touched rows hold the diff's values.
 */
import type pg from "pg";
import type { Diff, TableChanges } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent, quoteLiteral } from "../pg/connect.ts";
import { ownRows, ownRowsIn, qualified } from "../pg/table-names.ts";
import { keyAfter, keyBefore, keyPredicate } from "./rows.ts";

/** A data save made before destructive DDL, for rollback. */
export interface SavedData {
  readonly kind: "table" | "column";
  readonly schema: string;
  readonly table: string;
  readonly column?: string;
  readonly keyColumns: readonly string[];
  readonly savedAs: string;
}

/** The primary key columns of a table, in key order. */
async function keyColumnsOf(c: pg.ClientBase, schema: string, table: string): Promise<string[]> {
  const r = await query<{ a: string }>(
    c,
    `SELECT a.attname AS a FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [qualified(schema, table)],
  );
  return r.rows.map((x) => x.a);
}

/** Saves the data of every table or column the diff drops (or rebuilds) into the airlock schema. */
export async function saveDroppedData(c: pg.ClientBase, diff: Diff, promotionId: string): Promise<SavedData[]> {
  const saved: SavedData[] = [];
  for (const [i, ch] of diff.schemaChanges.entries()) {
    if ((ch.action !== "drop" && ch.action !== "recreate") || (ch.kind !== "table" && ch.kind !== "column")) continue;
    if (ch.target === undefined) continue;
    // A table or column the agent created and dropped again is not in production: nothing to save.
    const exists = await query(
      c,
      "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND ($2::text IS NULL OR attname = $2) AND NOT attisdropped LIMIT 1",
      [qualified(ch.target.schema, ch.target.table), ch.target.column ?? null],
    );
    if (exists.rowCount === 0) continue;
    const t = { schema: ch.target.schema, table: ch.target.table, column: ch.target.column ?? null };
    const savedAs = `${promotionId.replace(/-/g, "_")}_${i}`;
    const keyColumns = await keyColumnsOf(c, t.schema, t.table);
    if (t.column !== null && keyColumns.length === 0) {
      // Without a key, a rollback could not tell which row each saved value belongs to.
      throw new AirlockError(
        "AIRLOCK_ROLLBACK_IMPOSSIBLE",
        `this promotion could not be rolled back exactly, so it was not applied:\n  - column ${t.schema}.${t.table}.${t.column} is dropped from a table without a primary key: its values could not be put back row by row`,
        {
          hint: "give the table a primary key first, or drop the column by hand (with its own backup)",
          exitCode: EXIT_REFUSED,
        },
      );
    }
    const cols = t.column === null ? "*" : [...keyColumns, t.column].map(quoteIdent).join(", ");
    // Its own rows: a table inheriting from it has its own (saved if it is dropped too).
    const rows = (await ownRowsIn(c, [t]))(t.schema, t.table);
    await query(c, `CREATE TABLE airlock.${quoteIdent(savedAs)} AS SELECT ${cols} FROM ${rows}`);
    saved.push({
      kind: t.column === null ? "table" : "column",
      schema: t.schema,
      table: t.table,
      ...(t.column === null ? {} : { column: t.column }),
      keyColumns,
      savedAs,
    });
  }
  return saved;
}

/** Stores row images (full rows as jsonb) for the given keys. */
async function saveImages(
  c: pg.ClientBase,
  promotionId: string,
  t: TableChanges,
  kind: "pre" | "post",
  op: string,
  keys: ReadonlyArray<Readonly<Record<string, string | null>>>,
): Promise<void> {
  if (keys.length === 0 || t.key === null) return;
  const keyJson = `jsonb_build_object(${t.key.map((k) => `${quoteLiteral(k)}, ${quoteIdent(k)}::text`).join(", ")})`;
  await query(
    c,
    `INSERT INTO airlock.row_images (promotion_id, table_schema, table_name, kind, op, key, row)
     SELECT $1, $2, $3, $4, $5, ${keyJson}, to_jsonb(r) FROM ${ownRows(t.schema, t.name, t.partitioned === true)} r WHERE ${keyPredicate(t, t.key, keys)}`,
    [promotionId, t.schema, t.name, kind, op],
  );
}

/** Saves the pre-image of every row the diff updates or deletes, before it is applied. */
export async function savePreImages(c: pg.ClientBase, promotionId: string, diff: Diff): Promise<void> {
  for (const t of diff.tables) {
    await saveImages(
      c,
      promotionId,
      t,
      "pre",
      "update",
      t.changes.filter((ch) => ch.kind === "update").map((ch) => keyBefore(ch)!),
    );
    await saveImages(
      c,
      promotionId,
      t,
      "pre",
      "delete",
      t.changes.filter((ch) => ch.kind === "delete").map((ch) => keyBefore(ch)!),
    );
  }
}

/** Saves the post-image of every row the diff updated or inserted, after it was applied. */
export async function savePostImages(c: pg.ClientBase, promotionId: string, diff: Diff): Promise<void> {
  for (const t of diff.tables) {
    await saveImages(
      c,
      promotionId,
      t,
      "post",
      "update",
      t.changes.filter((ch) => ch.kind === "update").map((ch) => keyAfter(t, ch)!),
    );
    await saveImages(
      c,
      promotionId,
      t,
      "post",
      "insert",
      t.changes
        .filter((ch) => ch.kind === "insert")
        .map((ch) => keyAfter(t, ch)!)
        .filter((k) => k !== null),
    );
  }
}

/** Reads the touched rows back after commit and checks they hold the diff's values (compared by the server, type-aware). */
export async function confirmApplied(c: pg.ClientBase, diff: Diff): Promise<boolean> {
  for (const t of diff.tables) {
    if (t.key === null) continue;
    for (const ch of t.changes) {
      const expected = ch.kind === "insert" ? ch.row : ch.kind === "update" ? ch.new : {};
      const key = ch.kind === "delete" ? keyBefore(ch)! : keyAfter(t, ch)!;
      const params: Array<string | null> = [];
      const conds = Object.entries(expected).map(([col, v]) => {
        params.push(v);
        return `${quoteIdent(col)} IS NOT DISTINCT FROM $${params.length}::${t.columns.find((x) => x.name === col)?.type ?? "text"}`;
      });
      const r = await query<{ n: number }>(
        c,
        `SELECT count(*)::int AS n FROM ${ownRows(t.schema, t.name, t.partitioned === true)} WHERE ${keyPredicate(t, t.key, [key])}${conds.map((x) => ` AND ${x}`).join("")}`,
        params,
      );
      if (r.rows[0]!.n !== (ch.kind === "delete" ? 0 : 1)) return false;
    }
  }
  return true;
}
