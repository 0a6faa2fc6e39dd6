/**
 * One trigger semantics for replay and promotion: the diff already holds
 * every row the session produced, including what triggers and rules wrote
 * in work (stamped timestamps, history rows), so while the diff's rows are
 * written, the target's own user triggers and rules on the tables written
 * to (and their partitions) are paused and then put back exactly as they
 * were: nothing fires twice, and nothing the agent wrote fires at all.
 * Foreign keys (internal triggers) stay enforced.
 *
 * `ALTER TABLE … DISABLE TRIGGER` and `DISABLE RULE` need the table's owner
 * (or a superuser) and lock the table until the transaction ends: SHARE ROW
 * EXCLUSIVE for triggers (reads go on, writes wait), ACCESS EXCLUSIVE for
 * rules (everything waits).
 */
import type pg from "pg";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";

/** A trigger or rule that was enabled, and how. */
interface Paused {
  readonly kind: "TRIGGER" | "RULE";
  readonly table: string;
  readonly name: string;
  /** O (origin, the default), R (replica) or A (always). */
  readonly mode: string;
}

/** What pausing did, to be undone by resumeTriggers. */
export interface PausedTriggers {
  readonly paused: readonly Paused[];
}

/** The tables written to and every partition or child of them, as regclass texts. */
const RELATIONS = `
  WITH RECURSIVE rel(oid) AS (
    SELECT to_regclass(t) FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL
    UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rel ON i.inhparent = rel.oid
  )`;

/** Enabled user triggers and rules on the given tables (qualified, quoted names) and their partitions. */
async function enabledOn(c: pg.ClientBase, tables: readonly string[]): Promise<Array<Paused & { owned: boolean; depth: number }>> {
  const r = await query<{ kind: "TRIGGER" | "RULE"; tbl: string; name: string; mode: string; owned: boolean; depth: number }>(
    c,
    `${RELATIONS}
     SELECT 'TRIGGER' AS kind, t.tgrelid::regclass::text AS tbl, t.tgname AS name, t.tgenabled::text AS mode,
            pg_catalog.pg_has_role(cl.relowner, 'USAGE') AS owned, cl.relispartition::int AS depth
       FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class cl ON cl.oid = t.tgrelid
      WHERE t.tgrelid IN (SELECT oid FROM rel) AND NOT t.tgisinternal AND t.tgenabled <> 'D'
     UNION ALL
     SELECT 'RULE', r.ev_class::regclass::text, r.rulename, r.ev_enabled::text,
            pg_catalog.pg_has_role(cl.relowner, 'USAGE'), cl.relispartition::int
       FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class cl ON cl.oid = r.ev_class
      WHERE r.ev_class IN (SELECT oid FROM rel) AND r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'
      ORDER BY 6, 2, 1, 3`,
    [tables],
  );
  return r.rows.map((x) => ({ kind: x.kind, table: x.tbl, name: x.name, mode: x.mode, owned: x.owned, depth: x.depth }));
}

/**
 * Refuses, before anything changes, when the connected role could not pause
 * the triggers or rules of a table the diff writes to (it must own it, or be
 * a member of its owner, or a superuser).
 */
export async function checkCanPauseTriggers(c: pg.ClientBase, tables: readonly string[]): Promise<void> {
  const blocked = (await enabledOn(c, tables)).filter((x) => !x.owned);
  if (blocked.length === 0) return;
  const user = (await query<{ u: string }>(c, "SELECT current_user AS u")).rows[0]!.u;
  const list = [...new Set(blocked.map((b) => b.table))];
  throw new AirlockError(
    "AIRLOCK_PROMOTER_NOT_OWNER",
    `${user} does not own ${list.join(", ")}, which ${list.length === 1 ? "has" : "have"} triggers or rules: a promotion writes the diff's rows with them paused (the diff already holds what they wrote in staging), and only a table's owner can pause them`,
    {
      hint: `promote as the owner of ${list.length === 1 ? "that table" : "those tables"} (or a role that is a member of it), or as a superuser`,
      exitCode: EXIT_REFUSED,
      details: { tables: list, triggers: blocked.map((b) => `${b.table}.${b.name}`) },
    },
  );
}

/** Pauses every enabled user trigger and rule on the tables (and their partitions); returns what to resume. */
export async function pauseTriggers(c: pg.ClientBase, tables: readonly string[]): Promise<PausedTriggers> {
  await checkCanPauseTriggers(c, tables);
  const paused = (await enabledOn(c, tables)).map(({ kind, table, name, mode }) => ({ kind, table, name, mode }));
  for (const p of paused) await query(c, `ALTER TABLE ${p.table} DISABLE ${p.kind} ${quoteIdent(p.name)}`);
  return { paused };
}

/** Puts every paused trigger and rule back in the mode it had (parents before partitions). */
export async function resumeTriggers(c: pg.ClientBase, state: PausedTriggers): Promise<void> {
  for (const p of state.paused) {
    const mode = p.mode === "R" ? "ENABLE REPLICA" : p.mode === "A" ? "ENABLE ALWAYS" : "ENABLE";
    await query(c, `ALTER TABLE ${p.table} ${mode} ${p.kind} ${quoteIdent(p.name)}`);
  }
}
