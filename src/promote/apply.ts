/**
 * The one function that applies a diff to a database: used by replay
 * verification on a clone of base, and by promotion to production, so that
 * what was verified is exactly what is promoted. Order: schema changes,
 * deletes (children first), updates, inserts (parents first), then
 * sequences moved past inserted keys. Values are sent as parameters in
 * Postgres text form and cast by the server, so they arrive byte for byte.
 */
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import { query, quoteIdent, quoteLiteral } from "../pg/connect.ts";
import { type Diff, type RowValues, type SchemaChangeRecord, type TableChanges, forwardSchema } from "../diff/types.ts";
import { OwnerRunner } from "./run-as.ts";
import { pauseTriggers, resumeTriggers } from "./triggers.ts";

/** One statement with its parameters. */
export interface Statement {
  readonly sql: string;
  readonly params: ReadonlyArray<string | null>;
  /** What it does, for progress and errors ("insert into public.guests"). */
  readonly what: string;
  /** Schema statements change no row count; inserts add one row; updates and deletes must match exactly one. */
  readonly kind: "schema" | "insert" | "update" | "delete";
  /** For schema statements that evaluate code: the change (run as its object's owner in production, src/promote/run-as.ts). */
  readonly change?: SchemaChangeRecord;
}

function tableName(t: TableChanges): string {
  return `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
}

function typeOf(t: TableChanges, column: string): string {
  const c = t.columns.find((x) => x.name === column);
  if (c === undefined) throw new Error(`column ${column} of ${t.schema}.${t.name} is not in the diff`);
  return c.type;
}

/** WHERE clause matching a row by its key (or, without a key, by every value, one row only). */
function match(t: TableChanges, key: RowValues, params: Array<string | null>): string {
  // Key columns are NOT NULL: "=" lets the key's index find the row (IS NOT DISTINCT FROM cannot use it,
  // which made every statement a sequential scan). Without a key, NULLs must match too.
  const conds = Object.entries(key).map(([col, value]) => {
    params.push(value);
    return t.key !== null ? `${quoteIdent(col)} = $${params.length}::${typeOf(t, col)}` : `${quoteIdent(col)} IS NOT DISTINCT FROM $${params.length}::${typeOf(t, col)}`;
  });
  if (t.key !== null) return conds.join(" AND ");
  // A multiset: remove exactly one of possibly identical rows.
  return `ctid = (SELECT ctid FROM ${tableName(t)} WHERE ${conds.join(" AND ")} LIMIT 1)`;
}

/** The statements that apply a diff's data changes, in foreign-key order. */
export function dataStatements(diff: Diff): Statement[] {
  const out: Statement[] = [];
  // diff.tables is in foreign-key order (referenced tables first).
  for (const t of [...diff.tables].reverse()) {
    for (const ch of t.changes) {
      if (ch.kind !== "delete") continue;
      const params: Array<string | null> = [];
      out.push({ sql: `DELETE FROM ${tableName(t)} WHERE ${match(t, ch.key, params)}`, params, what: `delete from ${t.schema}.${t.name}`, kind: "delete" });
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
      out.push({ sql: `UPDATE ${tableName(t)} SET ${sets.join(", ")} WHERE ${match(t, ch.key, params)}`, params, what: `update ${t.schema}.${t.name}`, kind: "update" });
    }
  }
  for (const t of diff.tables) {
    for (const ch of t.changes) {
      if (ch.kind !== "insert") continue;
      const cols = Object.keys(ch.row);
      const params = cols.map((c) => ch.row[c] ?? null);
      const values = cols.map((c, i) => `$${i + 1}::${typeOf(t, c)}`);
      // OVERRIDING SYSTEM VALUE: the key the agent's row has is the key it gets, even for GENERATED ALWAYS identities.
      out.push({ sql: `INSERT INTO ${tableName(t)} (${cols.map(quoteIdent).join(", ")}) OVERRIDING SYSTEM VALUE VALUES (${values.join(", ")})`, params, what: `insert into ${t.schema}.${t.name}`, kind: "insert" });
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

/** Moves each sequence feeding a column of an inserted-into table past the largest value now in it. */
async function fixSequences(client: pg.ClientBase, diff: Diff): Promise<void> {
  const inserted = diff.tables.filter((t) => t.changes.some((c) => c.kind === "insert")).map((t) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
  if (inserted.length === 0) return;
  const seqs = await query<{ tbl: string; col: string; seq: string }>(
    client,
    `SELECT a.attrelid::regclass::text AS tbl, a.attname AS col, pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) AS seq
       FROM pg_attribute a
      WHERE a.attrelid = ANY (SELECT unnest($1::text[])::regclass) AND a.attnum > 0 AND NOT a.attisdropped
        AND pg_get_serial_sequence(a.attrelid::regclass::text, a.attname) IS NOT NULL`,
    [inserted],
  );
  for (const s of seqs.rows) {
    await query(
      client,
      `SELECT setval($1, m) FROM (SELECT max(${quoteIdent(s.col)})::bigint AS m FROM ${s.tbl}) x, ${s.seq} q
        WHERE m IS NOT NULL AND (m > q.last_value OR NOT q.is_called)`,
      [s.seq],
    );
  }
}

/** Options of applyDiff. */
export interface ApplyOptions {
  /**
   * A replay on a staging clone: changes that reach beyond the database (a role's settings everywhere) are
   * left out, or the agent's settings would land on the staging server's own roles.
   */
  readonly replay?: boolean;
}

/** The diff's tables as qualified, quoted names. */
export function diffTableNames(diff: Pick<Diff, "tables">): string[] {
  return diff.tables.map((t) => tableName(t));
}

/**
 * Applies a diff inside the caller's transaction; returns how many statements ran. While the rows are
 * written, the target's user triggers and rules on the written tables are paused (src/promote/triggers.ts):
 * the diff holds what they wrote in staging.
 */
export async function applyDiff(client: pg.ClientBase, diff: Diff, options: ApplyOptions = {}): Promise<{ statements: number }> {
  const replay = options.replay === true;
  const records = diff.schemaChanges.filter((c) => !replay || c.serverWide !== true);
  // A replay runs as the replayer, who owns everything there: only production needs a change run as its owner.
  const ddl = (c: SchemaChangeRecord) => (sql: string): Statement => ({ sql, params: [], what: `schema change ${c.id}`, kind: "schema", ...(replay || c.runsCode === undefined ? {} : { change: c }) });
  const phases = [records.flatMap((c) => c.sql.map(ddl(c))), dataStatements(diff), records.flatMap((c) => c.afterData.map(ddl(c)))] as const;
  const total = phases.reduce((n, p) => n + p.length, 0);
  // Function bodies are checked when they run, not when the schema changes create them (as pg_dump restores do).
  await query(client, "SELECT set_config('check_function_bodies', 'off', true)");
  const owners = new OwnerRunner(client);
  let i = 0;
  const run = async (s: Statement) => {
    if (s.change?.runsCode !== undefined) {
      await owners.run(s.change, s.change.runsCode, s.sql);
      i++;
      return;
    }
    const r = await query(client, s.sql, s.params);
    if ((s.kind === "update" || s.kind === "delete") && r.rowCount !== 1) {
      throw new AirlockError("AIRLOCK_APPLY_ROWCOUNT", `${s.what} matched ${r.rowCount ?? 0} rows instead of 1 (statement ${i + 1} of ${total})`, {
        hint: "the target no longer holds the row the diff was made against; nothing was committed",
      });
    }
    i++;
  };
  for (const s of phases[0]) await run(s);
  if (phases[1].length > 0) {
    const paused = await pauseTriggers(client, diffTableNames(diff));
    for (const s of phases[1]) await run(s);
    await resumeTriggers(client, paused);
  }
  await fixSequences(client, diff);
  for (const s of phases[2]) await run(s);
  await owners.close();
  return { statements: total };
}
