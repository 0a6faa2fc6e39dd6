/**
 * SQL fragments for finding a diff's rows in a target database by key, and
 * the keys of every row a diff touches. Shared by promote and rollback (how
 * a statement names a table's own rows is src/pg/table-names.ts).
 */
import type { RowChange, RowValues, TableChanges } from "../diff/types.ts";
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";

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
