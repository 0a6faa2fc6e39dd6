/**
 * The statements that apply a diff, built from the diff alone: schema
 * changes, deletes (children first), updates, inserts (parents first).
 * Values are sent as parameters in Postgres text form and cast by the
 * server, so they arrive byte for byte. Run by src/apply/apply.ts, and
 * written out (inlined, never executed) as a diff's promote.sql.
 */
import { type Diff, type RowValues, type SchemaChangeRecord, type TableChanges, forwardSchema } from "../diff/types.ts";
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";
import { ownRows, qualified } from "../pg/table-names.ts";

/** One statement with its parameters. */
export interface Statement {
  readonly sql: string;
  readonly params: ReadonlyArray<string | null>;
  /** What it does, for progress and errors ("insert into public.guests"). */
  readonly what: string;
  /** Schema statements change no row count; inserts add one row; updates and deletes must match exactly one. */
  readonly kind: "schema" | "insert" | "update" | "delete";
  /** For schema statements that evaluate code: the change (run as its object's owner in production, src/apply/run-as.ts). */
  readonly change?: SchemaChangeRecord;
  /** An insert into or delete from a table without a key: returns the whole row as the target holds it (`row`, jsonb text). */
  readonly wholeRow?: { readonly schema: string; readonly table: string };
}

/**
 * A row written to or deleted from a table without a key, whole, as the target held it: what a rollback
 * needs to undo it (such a row has no identity but all its values; src/promote/multiset.ts).
 */
export interface WholeRow {
  readonly schema: string;
  readonly table: string;
  readonly op: "insert" | "delete";
  /** The row's `to_jsonb` text: never parsed here, so no bigint or numeric loses a digit. */
  readonly row: string;
}

/** The alias the target's row goes by in statements that return it whole. */
const ROW_ALIAS = "airlock_row";

/** The table's own rows, for the statements that find, update or delete them (never its inheritance children's: src/pg/table-names.ts). */
function rowsOf(t: TableChanges): string {
  return ownRows(t.schema, t.name, t.partitioned === true);
}

function typeOf(t: TableChanges, column: string): string {
  const c = t.columns.find((x) => x.name === column);
  if (c === undefined) throw new Error(`column ${column} of ${t.schema}.${t.name} is not in the diff`);
  return c.type;
}

/** WHERE clause matching a row by its key. */
function match(t: TableChanges, key: RowValues, params: Array<string | null>): string {
  // Key columns are NOT NULL: "=" lets the key's index find the row (IS NOT DISTINCT FROM cannot use it,
  // which made every statement a sequential scan).
  return Object.entries(key)
    .map(([col, value]) => {
      params.push(value);
      return `${quoteIdent(col)} = $${params.length}::${typeOf(t, col)}`;
    })
    .join(" AND ");
}

/**
 * DELETE of one row of a table without a key, matched by every value (NULLs too), returning it whole. A
 * multiset: exactly one of possibly identical rows goes, found by its place (partition and ctid: a ctid alone
 * repeats across partitions). A table with no copyable columns matches any row.
 */
function deleteOneRow(t: TableChanges, row: RowValues, params: Array<string | null>): string {
  const conds = Object.entries(row).map(([col, value]) => {
    params.push(value);
    return `${quoteIdent(col)} IS NOT DISTINCT FROM $${params.length}::${typeOf(t, col)}`;
  });
  const where = conds.length === 0 ? "" : ` WHERE ${conds.join(" AND ")}`;
  return `WITH one AS (SELECT tableoid AS t, ctid AS c FROM ${rowsOf(t)}${where} LIMIT 1)
    DELETE FROM ${rowsOf(t)} AS ${ROW_ALIAS} WHERE tableoid = (SELECT t FROM one) AND ctid = (SELECT c FROM one) RETURNING to_jsonb(${ROW_ALIAS})::text AS row`;
}

/** INSERT of one row; a table with no copyable columns takes `DEFAULT VALUES`, and a keyless table's row comes back whole. */
function insertRow(t: TableChanges, row: RowValues): { sql: string; params: Array<string | null> } {
  const cols = Object.keys(row);
  const returning = t.key === null ? ` RETURNING to_jsonb(${ROW_ALIAS})::text AS row` : "";
  const into = `INSERT INTO ${qualified(t.schema, t.name)}${t.key === null ? ` AS ${ROW_ALIAS}` : ""}`;
  if (cols.length === 0) return { sql: `${into} DEFAULT VALUES${returning}`, params: [] };
  const values = cols.map((c, i) => `$${i + 1}::${typeOf(t, c)}`);
  // OVERRIDING SYSTEM VALUE: the key the agent's row has is the key it gets, even for GENERATED ALWAYS identities.
  return {
    sql: `${into} (${cols.map(quoteIdent).join(", ")}) OVERRIDING SYSTEM VALUE VALUES (${values.join(", ")})${returning}`,
    params: cols.map((c) => row[c] ?? null),
  };
}

/** The statements that apply a diff's data changes, in foreign-key order. */
export function dataStatements(diff: Diff): Statement[] {
  const out: Statement[] = [];
  // diff.tables is in foreign-key order (referenced tables first).
  for (const t of [...diff.tables].reverse()) {
    for (const ch of t.changes) {
      if (ch.kind !== "delete") continue;
      const params: Array<string | null> = [];
      const what = `delete from ${t.schema}.${t.name}`;
      if (t.key === null) out.push({ sql: deleteOneRow(t, ch.old, params), params, what, kind: "delete", wholeRow: { schema: t.schema, table: t.name } });
      else out.push({ sql: `DELETE FROM ${rowsOf(t)} WHERE ${match(t, ch.key, params)}`, params, what, kind: "delete" });
    }
  }
  for (const t of diff.tables) {
    for (const ch of t.changes) {
      if (ch.kind !== "update") continue;
      const params: Array<string | null> = [];
      const sets = Object.entries(ch.new).map(([col, value]) => {
        params.push(value);
        return `${quoteIdent(col)} = $${params.length}::${typeOf(t, col)}`;
      });
      out.push({
        sql: `UPDATE ${rowsOf(t)} SET ${sets.join(", ")} WHERE ${match(t, ch.key, params)}`,
        params,
        what: `update ${t.schema}.${t.name}`,
        kind: "update",
      });
    }
  }
  for (const t of diff.tables) {
    for (const ch of t.changes) {
      if (ch.kind !== "insert") continue;
      const { sql, params } = insertRow(t, ch.row);
      out.push({
        sql,
        params,
        what: `insert into ${t.schema}.${t.name}`,
        kind: "insert",
        ...(t.key === null ? { wholeRow: { schema: t.schema, table: t.name } } : {}),
      });
    }
  }
  return out;
}

/** Every statement of a diff: schema changes, data, then the schema changes that need the data. */
export function diffStatements(diff: Diff, options: { replay?: boolean } = {}): Statement[] {
  const ddl = (sql: string): Statement => ({ sql, params: [], what: "schema change", kind: "schema" });
  const schema = forwardSchema(diff, options);
  return [...schema.before.map(ddl), ...dataStatements(diff), ...schema.after.map(ddl)];
}

/** A readable SQL text of a statement with its parameters inlined (for promote.sql; never executed). */
export function inlineStatement(s: Statement): string {
  return s.sql.replace(/\$(\d+)/g, (_, n: string) => {
    const v = s.params[Number(n) - 1];
    return v === null || v === undefined ? "NULL" : quoteLiteral(v);
  });
}

/** The diff's tables as qualified, quoted names. */
export function diffTableNames(diff: Pick<Diff, "tables">): string[] {
  return diff.tables.map((t) => qualified(t.schema, t.name));
}
