/**
 * Deferrable constraints while Airlock writes rows (a promotion's data, a
 * rollback's restore): deferred for the whole data phase, so that a cycle
 * of foreign keys (two tables referencing each other, DEFERRABLE) can be
 * written whatever order the rows come in, and checked as soon as the rows
 * are written, before the DDL that follows. Postgres refuses `ALTER TABLE`
 * and `DROP TABLE` on a table with checks still pending ("cannot ALTER
 * TABLE … because it has pending trigger events", 55006), which is how the
 * rollback of two new tables with cyclic deferred foreign keys once failed.
 * Constraints that are not deferrable are checked per statement as always,
 * and nothing is left unchecked: a violation fails the transaction at
 * settleChecks, so nothing is committed.
 */
import type pg from "pg";
import { query } from "../pg/connect.ts";

/** Defers every deferrable constraint until settleChecks (or commit), inside the caller's transaction. */
export async function deferChecks(c: pg.ClientBase): Promise<void> {
  await query(c, "SET CONSTRAINTS ALL DEFERRED");
}

/** Runs every pending deferred check now; DDL may follow. */
export async function settleChecks(c: pg.ClientBase): Promise<void> {
  await query(c, "SET CONSTRAINTS ALL IMMEDIATE");
}
