/**
 * The sequences that feed columns: a column default's `nextval(...)` (any
 * sequence, any schema, OWNED BY or not, shared or not), an identity
 * column's, and a bare OWNED BY link, read from the catalog itself
 * (pg_depend from pg_attrdef, and OWNED BY / identity links), since
 * `pg_get_serial_sequence` sees only the last two.
 */
import type pg from "pg";
import { query } from "../pg/connect.ts";

/** A column that gets its values from a sequence. */
export interface SequenceFeed {
  readonly seqSchema: string;
  readonly seqName: string;
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /** How: the column's default calls it, it is the column's identity, or only OWNED BY links them. */
  readonly via: "default" | "identity" | "owned";
  /** The column's type can hold the sequence's numbers (smallint, integer, bigint, numeric). */
  readonly numeric: boolean;
}

const FEEDS_SQL = `
  WITH feeds AS (
    SELECT d.refobjid AS seq, ad.adrelid AS rel, ad.adnum AS attnum, 'default' AS via
      FROM pg_attrdef ad
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
    UNION
    SELECT d.objid, d.refobjid, d.refobjsubid, CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'owned' END
      FROM pg_depend d
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
  )
  SELECT DISTINCT sn.nspname AS seq_schema, s.relname AS seq_name, tn.nspname AS schema, t.relname AS table, a.attname AS column, f.via,
         a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype, 'numeric'::regtype) AS numeric
    FROM feeds f
    JOIN pg_class s ON s.oid = f.seq AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
    JOIN pg_class t ON t.oid = f.rel JOIN pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = f.rel AND a.attnum = f.attnum AND NOT a.attisdropped
   WHERE `;

type FeedRow = { seq_schema: string; seq_name: string; schema: string; table: string; column: string; via: SequenceFeed["via"]; numeric: boolean };

function toFeed(r: FeedRow): SequenceFeed {
  return { seqSchema: r.seq_schema, seqName: r.seq_name, schema: r.schema, table: r.table, column: r.column, via: r.via, numeric: r.numeric };
}

/** Every column of these tables (those that exist) fed by a sequence, and the sequence. */
export async function feedsOfTables(c: pg.ClientBase, tables: ReadonlyArray<{ readonly schema: string; readonly name: string }>): Promise<SequenceFeed[]> {
  if (tables.length === 0) return [];
  const r = await query<FeedRow>(c, `${FEEDS_SQL} (tn.nspname, t.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, [
    tables.map((t) => t.schema),
    tables.map((t) => t.name),
  ]);
  return r.rows.map(toFeed);
}

/** Every column, in any table, fed by this sequence. */
export async function feedsOfSequence(c: pg.ClientBase, schema: string, name: string): Promise<SequenceFeed[]> {
  const r = await query<FeedRow>(c, `${FEEDS_SQL} sn.nspname = $1 AND s.relname = $2`, [schema, name]);
  return r.rows.map(toFeed);
}

/** The feed that gives a column its values when several claim it: its default or identity before a bare OWNED BY. */
export function feedOfColumn(feeds: readonly SequenceFeed[], schema: string, table: string, column: string): SequenceFeed | undefined {
  const rank = { default: 0, identity: 0, owned: 1 } as const;
  return feeds.filter((f) => f.schema === schema && f.table === table && f.column === column).sort((a, b) => rank[a.via] - rank[b.via])[0];
}
