/**
 * The one function that applies a diff to a database: used by replay
 * verification on a clone of base, and by promotion to production, so that
 * what was verified is exactly what is promoted. Order: schema changes,
 * deletes (children first), updates, inserts (parents first), then
 * every sequence feeding a written column moved past the values written
 * (src/apply/sequences.ts). The statements themselves are built in
 * src/apply/statements.ts.
 */
import type pg from "pg";
import type { Diff, SchemaChangeRecord } from "../diff/types.ts";
import { AirlockError } from "../errors.ts";
import { query } from "../pg/connect.ts";
import { qualified } from "../pg/table-names.ts";
import { deferChecks, settleChecks } from "./deferred.ts";
import { OwnerRunner } from "./run-as.ts";
import { advanceSequences } from "./sequences.ts";
import { type Statement, type WholeRow, dataStatements, diffTableNames } from "./statements.ts";
import { pauseTriggers, resumeTriggers } from "./triggers.ts";

/**
 * Moves each sequence that feeds a column the diff wrote (serial, identity, or any `nextval` default, in any
 * schema) past the values written there: src/apply/sequences.ts.
 */
async function fixSequences(client: pg.ClientBase, diff: Diff): Promise<void> {
  await advanceSequences(client, diff);
}

/** Options of applyDiff. */
export interface ApplyOptions {
  /**
   * A replay on a staging clone: changes that reach beyond the database (a role's settings everywhere) are
   * left out, or the agent's settings would land on the staging server's own roles.
   */
  readonly replay?: boolean;
}

/**
 * Refuses to write rows by a diff whose tables are not, in the target, the kind the diff says (plain or
 * partitioned; a diff from before it said so has none partitioned): its statements would miss every row of a
 * partitioned table (`ONLY`), or write its inheritance children's rows with a plain one's.
 */
async function checkTableKinds(client: pg.ClientBase, diff: Diff): Promise<void> {
  const names = diff.tables.map((t) => qualified(t.schema, t.name));
  const r = await query<{ t: string; p: boolean }>(
    client,
    "SELECT x AS t, k.relkind = 'p' AS p FROM unnest($1::text[]) AS x JOIN pg_catalog.pg_class k ON k.oid = pg_catalog.to_regclass(x)",
    [names],
  );
  const partitioned = new Map(r.rows.map((x) => [x.t, x.p]));
  for (const t of diff.tables) {
    const here = partitioned.get(qualified(t.schema, t.name));
    if (here === undefined || here === (t.partitioned === true)) continue;
    throw new AirlockError(
      "AIRLOCK_APPLY_TABLE_KIND",
      `${t.schema}.${t.name} is ${here ? "a partitioned" : "a plain"} table here, but ${t.partitioned === true ? "a partitioned" : "a plain"} one in the diff`,
      {
        hint: "the diff was made by an earlier Airlock, or against another schema: diff the session again; nothing was committed",
      },
    );
  }
}

/** What applyDiff did. */
export interface Applied {
  readonly statements: number;
  /** Rows written to or deleted from tables without a key, whole, for rollback. */
  readonly wholeRows: readonly WholeRow[];
}

/**
 * Applies a diff inside the caller's transaction; returns how many statements ran and the whole rows it wrote
 * to or deleted from keyless tables. While the rows are written, the target's user triggers and rules on the
 * written tables are paused (src/apply/triggers.ts): the diff holds what they wrote in staging; and
 * deferrable constraints are deferred (src/apply/deferred.ts): a cycle of foreign keys is written in any order.
 */
export async function applyDiff(client: pg.ClientBase, diff: Diff, options: ApplyOptions = {}): Promise<Applied> {
  const replay = options.replay === true;
  const records = diff.schemaChanges.filter((c) => !replay || c.serverWide !== true);
  // A replay runs as the replayer, who owns everything there: only production needs a change run as its owner.
  const ddl =
    (c: SchemaChangeRecord) =>
    (sql: string): Statement => ({
      sql,
      params: [],
      what: `schema change ${c.id}`,
      kind: "schema",
      ...(replay || c.runsCode === undefined ? {} : { change: c }),
    });
  const phases = [records.flatMap((c) => c.sql.map(ddl(c))), dataStatements(diff), records.flatMap((c) => c.afterData.map(ddl(c)))] as const;
  const total = phases.reduce((n, p) => n + p.length, 0);
  // Function bodies are checked when they run, not when the schema changes create them (as pg_dump restores do).
  await query(client, "SELECT set_config('check_function_bodies', 'off', true)");
  const owners = new OwnerRunner(client);
  const wholeRows: WholeRow[] = [];
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
    if (s.wholeRow !== undefined) {
      const row = (r.rows[0] as { row: string } | undefined)?.row;
      if (row !== undefined) wholeRows.push({ ...s.wholeRow, op: s.kind === "insert" ? "insert" : "delete", row });
    }
    i++;
  };
  for (const s of phases[0]) await run(s);
  if (phases[1].length > 0) {
    await checkTableKinds(client, diff);
    const paused = await pauseTriggers(client, diffTableNames(diff));
    await deferChecks(client);
    for (const s of phases[1]) await run(s);
    // Checked here, before any DDL: Postgres refuses ALTER TABLE on a table with checks pending.
    await settleChecks(client);
    await resumeTriggers(client, paused);
  }
  await fixSequences(client, diff);
  for (const s of phases[2]) await run(s);
  await owners.close();
  return { statements: total, wholeRows };
}
