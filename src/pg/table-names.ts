/**
 * How a statement names a table and, apart from its inheritance children's,
 * its own rows. Shared by every step that reads or writes rows: capture, the
 * leak scan, diff, apply, promote and rollback.
 */
import type pg from "pg";
import { query, quoteIdent } from "./connect.ts";

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
export async function ownRowsIn(
  c: pg.ClientBase,
  tables: Iterable<{ readonly schema: string; readonly table: string }>,
): Promise<(schema: string, table: string) => string> {
  const names = [...new Set([...tables].map((t) => qualified(t.schema, t.table)))];
  const partitioned = new Set(
    names.length === 0
      ? []
      : (
          await query<{ t: string }>(
            c,
            "SELECT x AS t FROM unnest($1::text[]) AS x JOIN pg_catalog.pg_class k ON k.oid = pg_catalog.to_regclass(x) WHERE k.relkind = 'p'",
            [names],
          )
        ).rows.map((x) => x.t),
  );
  return (schema, table) => ownRows(schema, table, partitioned.has(qualified(schema, table)));
}

/** The columns a row can be written to, in table order: not dropped, not generated (`table` is a qualified name). */
export async function writableColumns(c: pg.ClientBase, table: string): Promise<string[]> {
  const r = await query<{ a: string }>(
    c,
    "SELECT attname AS a FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
    [table],
  );
  return r.rows.map((x) => x.a);
}
