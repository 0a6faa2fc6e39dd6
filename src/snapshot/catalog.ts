/**
 * What capture needs to know about production's tables, read from the
 * catalogs inside the capture's own read-only transaction (so it describes
 * the same instant as the data).
 */
import type pg from "pg";
import { query } from "../pg/connect.ts";

/** Schemas never captured: system ones, and Airlock's own (it holds real pre-images). */
export const EXCLUDED_SCHEMAS = ["pg_catalog", "information_schema", "airlock"] as const;

/** A column of a captured table. */
export interface CatalogColumn {
  readonly name: string;
  readonly type: string;
  readonly baseType: string;
  readonly maxLength?: number;
  readonly nullable: boolean;
  /** Generated columns are computed by the server and never copied. */
  readonly generated: boolean;
  /** The only column of a primary key or unique constraint/index. */
  readonly unique: boolean;
}

/** A foreign key from this table's columns to another table's columns. */
export interface CatalogForeignKey {
  readonly columns: readonly string[];
  readonly refSchema: string;
  readonly refTable: string;
  readonly refColumns: readonly string[];
}

/** A table Airlock captures. */
export interface CatalogTable {
  readonly schema: string;
  readonly name: string;
  readonly columns: readonly CatalogColumn[];
  /** The primary key, else a unique key over NOT NULL columns, else null (compared as a multiset). */
  readonly key: readonly string[] | null;
  readonly keyKind: "primary" | "unique" | null;
  readonly foreignKeys: readonly CatalogForeignKey[];
}

/** A sequence and its current state. */
export interface CatalogSequence {
  readonly schema: string;
  readonly name: string;
  readonly lastValue: string;
  readonly isCalled: boolean;
}

const EXCLUDE = `n.nspname NOT IN (${EXCLUDED_SCHEMAS.map((s) => `'${s}'`).join(", ")}) AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`;
const NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')";

/** Reads every ordinary table (partitions as their leaves) with its columns, key and foreign keys. */
export async function readTables(client: pg.ClientBase): Promise<CatalogTable[]> {
  const tables = await query<{ oid: number; schema: string; name: string }>(
    client,
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND ${EXCLUDE} AND ${NOT_EXTENSION}
      ORDER BY n.nspname, c.relname`,
  );
  const columns = await query<{ oid: number; name: string; type: string; base_type: string; max_length: number | null; not_null: boolean; generated: boolean }>(
    client,
    `SELECT a.attrelid::int AS oid, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            bt.typname AS base_type,
            CASE WHEN bt.typname IN ('varchar', 'bpchar') AND coalesce(nullif(t.typtypmod, -1), a.atttypmod) > 4
                 THEN coalesce(nullif(t.typtypmod, -1), a.atttypmod) - 4 END AS max_length,
            a.attnotnull OR (t.typtype = 'd' AND t.typnotnull) AS not_null,
            a.attgenerated <> '' AS generated
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
      WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attrelid = ANY($1::oid[])
      ORDER BY a.attrelid, a.attnum`,
    [tables.rows.map((t) => t.oid)],
  );
  const keys = await query<{ oid: number; kind: string; columns: string[]; all_not_null: boolean }>(
    client,
    `SELECT i.indrelid::int AS oid, CASE WHEN i.indisprimary THEN 'p' ELSE 'u' END AS kind,
            array_agg(a.attname::text ORDER BY k.ord) AS columns, bool_and(a.attnotnull) AS all_not_null
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid
        AND i.indrelid = ANY($1::oid[])
      GROUP BY i.indrelid, i.indexrelid, i.indisprimary
      ORDER BY i.indrelid, i.indisprimary DESC, count(*), i.indexrelid`,
    [tables.rows.map((t) => t.oid)],
  );
  const fks = await query<{ oid: number; columns: string[]; ref_schema: string; ref_table: string; ref_columns: string[] }>(
    client,
    `SELECT con.conrelid::int AS oid,
            array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS columns,
            rn.nspname AS ref_schema, rc.relname AS ref_table,
            array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS ref_columns
       FROM pg_constraint con
       JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
      WHERE con.contype = 'f' AND con.conrelid = ANY($1::oid[])
      ORDER BY con.conrelid, con.conname`,
    [tables.rows.map((t) => t.oid)],
  );
  return tables.rows.map((t) => {
    const tableKeys = keys.rows.filter((k) => k.oid === t.oid);
    const uniqueSingles = new Set(tableKeys.filter((k) => k.columns.length === 1).map((k) => k.columns[0]!));
    const primary = tableKeys.find((k) => k.kind === "p");
    const unique = tableKeys.find((k) => k.kind === "u" && k.all_not_null);
    const chosen = primary ?? unique;
    return {
      schema: t.schema,
      name: t.name,
      columns: columns.rows
        .filter((c) => c.oid === t.oid)
        .map((c) => ({
          name: c.name,
          type: c.type,
          baseType: c.base_type,
          ...(c.max_length === null ? {} : { maxLength: c.max_length }),
          nullable: !c.not_null,
          generated: c.generated,
          unique: uniqueSingles.has(c.name),
        })),
      key: chosen?.columns ?? null,
      keyKind: chosen === undefined ? null : chosen.kind === "p" ? "primary" : "unique",
      foreignKeys: fks.rows
        .filter((f) => f.oid === t.oid)
        .map((f) => ({ columns: f.columns, refSchema: f.ref_schema, refTable: f.ref_table, refColumns: f.ref_columns })),
    };
  });
}

/**
 * Reads every sequence's current value. Never skips one: the capture role's SELECT on every sequence is
 * checked first (src/snapshot/privileges.ts), since a sequence left out restarts at 1 in staging.
 */
export async function readSequences(client: pg.ClientBase): Promise<CatalogSequence[]> {
  const r = await query<{ schema: string; name: string; last_value: string | null; is_called: boolean }>(
    client,
    `SELECT s.schemaname AS schema, s.sequencename AS name, s.last_value::text AS last_value, s.last_value IS NOT NULL AS is_called
       FROM pg_sequences s
      WHERE s.schemaname NOT IN (${EXCLUDED_SCHEMAS.map((x) => `'${x}'`).join(", ")})
      ORDER BY 1, 2`,
  );
  return r.rows.map((s) => ({ schema: s.schema, name: s.name, lastValue: s.last_value ?? "1", isCalled: s.is_called }));
}
