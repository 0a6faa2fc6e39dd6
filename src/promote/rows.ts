/**
 * SQL fragments for finding a diff's rows in a target database by key, and
 * the keys of every row a diff touches. Shared by promote and rollback (and
 * `ownRows`, a table's own rows, by every step that reads or writes them).
 */
import type pg from "pg";
import type { RowChange, RowValues, TableChanges } from "../diff/types.ts";
import { query, quoteIdent, quoteLiteral } from "../pg/connect.ts";

/** `"schema"."table"` */
export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/**
 * A table's own rows, in a statement that reads or writes them (`SELECT … FROM`, `UPDATE`, `DELETE FROM`,
 * `COPY (SELECT …)`): `ONLY "schema"."table"` for a plain table, since PostgreSQL reads and writes a table
 * with the rows of the tables that inherit from it (theirs, not its); the name alone for a partitioned
 * table, which Airlock reads and writes through its parent (its partitions are not diffed apart). Never
 * ONLY a partitioned table: PostgreSQL 15 reads no rows of it that way, and `UPDATE ONLY` or `DELETE FROM
 * ONLY` it match none, without an error.
 */
export function ownRows(schema: string, table: string, partitioned: boolean): string {
  return partitioned ? qualified(schema, table) : `ONLY ${qualified(schema, table)}`;
}

/**
 * `ownRows` for tables of the connected database as they are now: which of them are partitioned is looked up
 * once (a table not among them, or missing, is taken as plain).
 */
export async function ownRowsIn(c: pg.ClientBase, tables: Iterable<{ readonly schema: string; readonly table: string }>): Promise<(schema: string, table: string) => string> {
  const names = [...new Set([...tables].map((t) => qualified(t.schema, t.table)))];
  const partitioned = new Set(
    names.length === 0
      ? []
      : (await query<{ t: string }>(c, "SELECT x AS t FROM unnest($1::text[]) AS x JOIN pg_catalog.pg_class k ON k.oid = pg_catalog.to_regclass(x) WHERE k.relkind = 'p'", [names])).rows.map((x) => x.t),
  );
  return (schema, table) => ownRows(schema, table, partitioned.has(qualified(schema, table)));
}

/** A literal of a value cast to its column's type (for statements that cannot take parameters, like COPY). */
export function typedLiteral(value: string | null, type: string): string {
  return value === null ? `NULL::${type}` : `${quoteLiteral(value)}::${type}`;
}

/** `(k1, k2) IN ((v, v), …)` for a set of keys; `false` for none. */
export function keyPredicate(t: Pick<TableChanges, "columns">, keyColumns: readonly string[], keys: readonly RowValues[]): string {
  if (keys.length === 0) return "false";
  const type = (c: string) => t.columns.find((x) => x.name === c)?.type ?? "text";
  const cols = keyColumns.map(quoteIdent).join(", ");
  const tuples = keys.map((k) => `(${keyColumns.map((c) => typedLiteral(k[c] ?? null, type(c))).join(", ")})`);
  return `(${cols}) IN (${tuples.join(", ")})`;
}

/** The key of a change as it is after the change (an update may change key columns). */
export function keyAfter(t: TableChanges, ch: RowChange): RowValues | null {
  if (t.key === null) return null;
  const source = ch.kind === "insert" ? ch.row : ch.kind === "update" ? { ...ch.key, ...ch.new } : null;
  return source === null ? null : Object.fromEntries(t.key.map((k) => [k, source[k] ?? null]));
}

/** The key of a change as it was before (updates and deletes). */
export function keyBefore(ch: RowChange): RowValues | null {
  return ch.kind === "insert" ? null : ch.key;
}
