/**
 * Row-level data diff: both sides streamed with COPY in key order and
 * merged, so memory does not grow with table size (only the changes are
 * kept). Tables without a usable key are compared as multisets of rows.
 */
import type pg from "pg";
import { query, quoteIdent } from "../pg/connect.ts";
import { copyOutLines } from "../pg/copy-lines.ts";
import { copyValue } from "../pg/copy-text.ts";
import { ownRows } from "../pg/table-names.ts";
import type { RowChange, RowValues, TableChanges } from "./types.ts";

/** A table as the diff sees it (after schema changes). */
export interface TableShape {
  readonly schema: string;
  readonly name: string;
  /**
   * Compared columns in attnum order (generated columns excluded: the server computes them). Empty for a
   * table with no columns or only generated ones: its rows still count, compared as a multiset of empty rows.
   */
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string; readonly numeric: boolean }>;
  readonly key: readonly string[] | null;
  readonly keyKind: "primary" | "unique" | null;
  /** Partitioned: read through its parent, its partitions with it; a plain table is read `ONLY` (its inheritance children are tables of their own). */
  readonly partitioned: boolean;
}

const NUMERIC_TYPES = /^(smallint|integer|bigint|numeric(\(.*\))?)$/;

const USER_TABLES = `t.relkind IN ('r', 'p') AND NOT t.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'`;

/** Reads the shapes of every user table of a database, with keys and foreign keys. */
export async function readShapes(c: pg.ClientBase): Promise<{ shapes: TableShape[]; foreignKeys: Array<{ from: string; to: string }> }> {
  // Tables apart from their columns: a table without a copyable column is still a table with rows.
  const tables = await query<{ schema: string; table: string; partitioned: boolean }>(
    c,
    `SELECT n.nspname AS schema, t.relname AS table, t.relkind = 'p' AS partitioned FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE ${USER_TABLES} ORDER BY n.nspname, t.relname`,
  );
  const cols = await query<{ schema: string; table: string; name: string; type: string }>(
    c,
    `SELECT n.nspname AS schema, t.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE ${USER_TABLES} AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
      ORDER BY n.nspname, t.relname, a.attnum`,
  );
  const keys = await query<{ schema: string; table: string; primary: boolean; columns: string[]; not_null: boolean }>(
    c,
    `SELECT n.nspname AS schema, t.relname AS table, i.indisprimary AS primary,
            array_agg(a.attname::text ORDER BY k.ord) AS columns, bool_and(a.attnotnull) AS not_null
       FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid
        AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'
      GROUP BY n.nspname, t.relname, i.indexrelid, i.indisprimary
      ORDER BY n.nspname, t.relname, i.indisprimary DESC, count(*), i.indexrelid`,
  );
  const fks = await query<{ from: string; to: string }>(
    c,
    `SELECT DISTINCT fn.nspname || '.' || f.relname AS from, tn.nspname || '.' || t.relname AS to
       FROM pg_constraint con
       JOIN pg_class f ON f.oid = con.conrelid JOIN pg_namespace fn ON fn.oid = f.relnamespace
       JOIN pg_class t ON t.oid = con.confrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
      WHERE con.contype = 'f' AND fn.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock')`,
  );
  const byTable = new Map<string, TableShape>();
  for (const t of tables.rows)
    byTable.set(`${t.schema}.${t.table}`, { schema: t.schema, name: t.table, columns: [], key: null, keyKind: null, partitioned: t.partitioned });
  for (const col of cols.rows) {
    const columns = byTable.get(`${col.schema}.${col.table}`)?.columns as Array<TableShape["columns"][number]> | undefined;
    columns?.push({ name: col.name, type: col.type, numeric: NUMERIC_TYPES.test(col.type) });
  }
  for (const k of keys.rows) {
    const id = `${k.schema}.${k.table}`;
    const shape = byTable.get(id);
    if (shape === undefined || shape.key !== null || !(k.primary || k.not_null)) continue;
    if (!k.columns.every((c2) => shape.columns.some((col) => col.name === c2))) continue;
    byTable.set(id, { ...shape, key: k.columns, keyKind: k.primary ? "primary" : "unique" });
  }
  return { shapes: [...byTable.values()], foreignKeys: fks.rows };
}

/** Compares two numbers written as decimal text (any length, sign, fraction). */
export function compareDecimalText(a: string, b: string): number {
  const na = a.startsWith("-");
  const nb = b.startsWith("-");
  if (na !== nb) return na ? -1 : 1;
  const sign = na ? -1 : 1;
  const [ai = "", af = ""] = (na ? a.slice(1) : a).split(".");
  const [bi = "", bf = ""] = (nb ? b.slice(1) : b).split(".");
  const ia = ai.replace(/^0+(?=\d)/, "");
  const ib = bi.replace(/^0+(?=\d)/, "");
  if (ia.length !== ib.length) return sign * (ia.length - ib.length);
  if (ia !== ib) return sign * (ia < ib ? -1 : 1);
  const fa = af.replace(/0+$/, "");
  const fb = bf.replace(/0+$/, "");
  return fa === fb ? 0 : sign * (fa < fb ? -1 : 1);
}

/** Code point order: what ORDER BY … COLLATE "C" gives for UTF-8 text. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

function orderedCopy(shape: TableShape, columns: TableShape["columns"]): string {
  const cols = columns.map((c) => quoteIdent(c.name)).join(", ");
  const table = ownRows(shape.schema, shape.name, shape.partitioned);
  // Numbers sort as numbers (and use the key's index); everything else by its text in code point order,
  // which is exactly how the merge compares them.
  const order =
    shape.key === null
      ? columns.map((c) => `${quoteIdent(c.name)}::text COLLATE "C"`).join(", ")
      : shape.key.map((k) => (shape.columns.find((c) => c.name === k)!.numeric ? quoteIdent(k) : `${quoteIdent(k)}::text COLLATE "C"`)).join(", ");
  // No columns: every row is the same empty line, in no particular order (and ORDER BY needs something to order by).
  return `COPY (SELECT ${cols} FROM ${table}${order === "" ? "" : ` ORDER BY ${order}`}) TO STDOUT`;
}

/**
 * Diffs one table present on both sides (same columns after the schema
 * changes), or only in work (`base` null: every row is an insert).
 */
export async function diffTable(base: pg.ClientBase | null, work: pg.ClientBase, shape: TableShape): Promise<TableChanges> {
  const columns = shape.columns;
  const names = columns.map((c) => c.name);
  const keyIdx = shape.key === null ? columns.map((_, i) => i) : shape.key.map((k) => names.indexOf(k));
  const toValues = (fields: readonly (string | null)[], idx: readonly number[]): RowValues =>
    Object.fromEntries(idx.map((i) => [names[i]!, fields[i] ?? null]));
  const all = columns.map((_, i) => i);
  const compareKeys = (a: readonly (string | null)[], b: readonly (string | null)[]): number => {
    for (const i of keyIdx) {
      const x = a[i] ?? null;
      const y = b[i] ?? null;
      if (x === y) continue;
      // NULLs sort last in Postgres' default ascending order.
      if (x === null) return 1;
      if (y === null) return -1;
      const c = shape.key !== null && columns[i]!.numeric ? compareDecimalText(x, y) : compareCodePoints(x, y);
      if (c !== 0) return c;
    }
    return 0;
  };
  const sql = orderedCopy(shape, columns);
  const parse = (line: string) => line.split("\t").map(copyValue);
  const baseIt = base === null ? null : copyOutLines(base, sql)[Symbol.asyncIterator]();
  const workIt = copyOutLines(work, sql)[Symbol.asyncIterator]();
  const nextLine = async (it: AsyncIterator<string> | null) => {
    if (it === null) return null;
    const r = await it.next();
    return r.done === true ? null : r.value;
  };
  const changes: RowChange[] = [];
  let rowsBefore = 0;
  let bLine = await nextLine(baseIt);
  let wLine = await nextLine(workIt);
  while (bLine !== null || wLine !== null) {
    // Most rows are untouched: identical lines mean the same key and no change, without parsing.
    if (bLine !== null && bLine === wLine) {
      rowsBefore++;
      bLine = await nextLine(baseIt);
      wLine = await nextLine(workIt);
      continue;
    }
    const b = bLine === null ? null : parse(bLine);
    const w = wLine === null ? null : parse(wLine);
    const c = b === null ? 1 : w === null ? -1 : compareKeys(b, w);
    if (c < 0) {
      changes.push({ kind: "delete", key: toValues(b!, keyIdx), old: toValues(b!, all) });
      rowsBefore++;
      bLine = await nextLine(baseIt);
    } else if (c > 0) {
      changes.push({ kind: "insert", row: toValues(w!, all) });
      wLine = await nextLine(workIt);
    } else {
      const changed = all.filter((i) => b![i] !== w![i]);
      if (changed.length > 0) changes.push({ kind: "update", key: toValues(b!, keyIdx), old: toValues(b!, changed), new: toValues(w!, changed) });
      rowsBefore++;
      bLine = await nextLine(baseIt);
      wLine = await nextLine(workIt);
    }
  }
  return {
    schema: shape.schema,
    name: shape.name,
    columns: columns.map((c) => ({ name: c.name, type: c.type })),
    key: shape.key,
    keyKind: shape.keyKind,
    ...(shape.partitioned ? { partitioned: true as const } : {}),
    rowsBefore,
    changes,
  };
}

/** Orders tables so that referenced tables come before the tables that reference them (name order among equals). */
export function foreignKeyOrder(tables: readonly string[], foreignKeys: ReadonlyArray<{ from: string; to: string }>): string[] {
  const pending = new Set(tables);
  const out: string[] = [];
  while (pending.size > 0) {
    const ready = [...pending].filter((t) => !foreignKeys.some((fk) => fk.from === t && fk.to !== t && pending.has(fk.to))).sort();
    // A cycle: take the first by name; the apply defers what it can.
    const batch = ready.length > 0 ? ready : [[...pending].sort()[0]!];
    for (const t of batch) {
      out.push(t);
      pending.delete(t);
    }
  }
  return out;
}
