/**
 * What the role that promotes, rolls back or audits must be allowed to do
 * in production, checked before anything changes.
 *
 * A promotion is refused up front when the connected role could not also
 * roll it back: rollback runs as the role that promoted, and a promotion
 * that only a stronger role can undo is not reversible by Airlock itself.
 * What rollback needs, measured on PostgreSQL 15:
 * - the `airlock` schema and every table in it owned by the role (it
 *   creates them on the first promotion, alters them as Airlock evolves,
 *   and keeps saved data there; creating the schema needs CREATE on the
 *   database once);
 * - on every table the diff writes rows to: SELECT, and UPDATE for tables
 *   with a key (their rows are locked FOR UPDATE to detect changes since),
 *   UPDATE where rows are updated, INSERT and DELETE where rows are inserted
 *   or deleted (rollback deletes the one and puts the other back);
 * - ownership (or membership in the owner) of every table among those, and
 *   their partitions and children, with enabled user triggers or rules, and
 *   of every table the diff adds a trigger or rule to: pausing them
 *   (`ALTER TABLE … DISABLE TRIGGER`) and dropping them need the owner;
 * - CREATE on the schema of every object the diff drops or recreates, and
 *   of every table it drops a column from that is not its last: rollback
 *   creates those again (a table rebuilt to put the column back in place,
 *   with the views over it and the foreign keys into it, whose owners and
 *   schemas the role then needs too);
 * - SELECT on every sequence (rollback reads production's catalog model,
 *   sequence positions included) and UPDATE on those the promotion moves.
 * Everything else a promotion's DDL needs (ownership of what it alters)
 * is needed the same way by its reverse: a role without it fails the
 * promotion itself, inside its transaction, with the privilege named
 * (src/pg/privilege-error.ts).
 *
 * `airlock audit` only reads: USAGE on the airlock schema and SELECT on
 * `airlock.audit_log` and `airlock.audit_head`, never the row images.
 *
 * This file decides which needs each step has and refuses it with every gap
 * named; the queries that find the gaps are in privilege-gaps.ts (rows,
 * triggers, sequences, the airlock schema) and schema-change-gaps.ts (what
 * undoing the diff's DDL needs).
 */
import type pg from "pg";
import type { Diff } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { STEP_ROLES } from "../pg/privilege-error.ts";
import { qualified } from "../pg/table-names.ts";
import { type PrivilegeGap, airlockGaps, currentRole, pauseGaps, rowNeeds, sequenceMoveGaps, sequenceReadGaps, tableGaps } from "./privilege-gaps.ts";
import { schemaChangeGaps } from "./schema-change-gaps.ts";

export type { PrivilegeGap } from "./privilege-gaps.ts";

/** The GRANTs that close the gaps, each once. */
function grants(gaps: readonly PrivilegeGap[]): string {
  return [...new Set(gaps.map((g) => `${g.grant};`))].join(" ");
}

/** The gaps as a list, one line each, for an error message. */
function listGaps(gaps: readonly PrivilegeGap[]): string {
  return gaps.map((g) => `  - ${g.need}: ${g.why}`).join("\n");
}

/** Each gap once (the first reason given). */
function uniqueGaps(gaps: readonly PrivilegeGap[]): PrivilegeGap[] {
  return gaps.filter((g, i) => gaps.findIndex((x) => x.need === g.need) === i);
}

/**
 * Refuses a promotion, before anything is changed, when the connected role could not promote it and roll it
 * back: every privilege missing is named, with the GRANT that gives it.
 */
export async function checkPromotePrivileges(c: pg.ClientBase, diff: Pick<Diff, "tables" | "schemaChanges">): Promise<void> {
  const role = await currentRole(c);
  const needs = diff.tables
    .filter((t) => t.changes.length > 0)
    .flatMap((t) =>
      rowNeeds(qualified(t.schema, t.name), {
        keyed: t.key !== null,
        inserts: t.changes.some((ch) => ch.kind === "insert"),
        updates: t.changes.some((ch) => ch.kind === "update"),
        deletes: t.changes.some((ch) => ch.kind === "delete"),
      }),
    );
  const written = diff.tables.filter((t) => t.changes.length > 0).map((t) => qualified(t.schema, t.name));
  const gaps = uniqueGaps([
    ...(await airlockGaps(c, role)),
    ...(await tableGaps(c, role, needs)),
    ...(await pauseGaps(c, role, written, "promote and rollback write its rows with its triggers and rules paused, which only the table's owner can")),
    ...(await sequenceMoveGaps(c, role, diff)),
    ...(await sequenceReadGaps(c, role, "promote and rollback read production's schema, sequence positions included")),
    ...(await schemaChangeGaps(c, role, diff.schemaChanges)),
  ]);
  if (gaps.length === 0) return;
  throw new AirlockError(
    "AIRLOCK_PROMOTE_PRIVILEGES",
    `role ${role} could not promote this diff and roll it back (rollback runs as the role that promoted); nothing was changed:\n${listGaps(gaps)}`,
    {
      hint: `promote with the role it needs — ${STEP_ROLES.promote} (README "Roles and privileges"); or, if ${role} is meant to do it, as an administrator: ${grants(gaps)}`,
      exitCode: EXIT_REFUSED,
      details: { role, missing: gaps },
    },
  );
}

/**
 * Refuses a rollback, before anything is changed, when the connected role lacks what it needs (the role that
 * promoted has it: its promotion was checked for exactly this).
 */
export async function checkRollbackPrivileges(c: pg.ClientBase, promotionId: string): Promise<void> {
  const role = await currentRole(c);
  const owner =
    (await query<{ o: string | null }>(c, "SELECT pg_catalog.pg_get_userbyid(nspowner) AS o FROM pg_catalog.pg_namespace WHERE nspname = 'airlock'")).rows[0]
      ?.o ?? null;
  const refuse = (gaps: readonly PrivilegeGap[]) =>
    new AirlockError("AIRLOCK_ROLLBACK_PRIVILEGES", `role ${role} cannot roll back promotion ${promotionId}; nothing was changed:\n${listGaps(gaps)}`, {
      hint: `roll back with the role that promoted${owner === null || owner === role ? "" : ` (the airlock schema's owner, ${owner})`}, which has all of it (README "Roles and privileges"); or, as an administrator: ${grants(gaps)}`,
      exitCode: EXIT_REFUSED,
      details: { role, missing: gaps },
    });
  // No airlock schema: no promotion to roll back, which the rollback itself reports.
  if (owner === null) return;
  // Airlock's own tables first: without them nothing of the promotion can be read.
  const airlock = await airlockGaps(c, role);
  if (airlock.length > 0) throw refuse(airlock);
  const exists = await query(c, "SELECT 1 FROM airlock.promotions WHERE id = $1", [promotionId]);
  // An unknown promotion is reported as such by the rollback itself.
  if (exists.rowCount === 0) return;
  const images = await query<{ schema: string; table: string; keyed: boolean; inserts: boolean; updates: boolean; deletes: boolean }>(
    c,
    `SELECT table_schema AS schema, table_name AS table, bool_or(key <> '{}'::jsonb) AS keyed, bool_or(op = 'insert') AS inserts, bool_or(op = 'update') AS updates, bool_or(op = 'delete') AS deletes
       FROM airlock.row_images WHERE promotion_id = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
    [promotionId],
  );
  const saved = await query<{ schema: string; table: string }>(
    c,
    'SELECT x.schema, x.table FROM airlock.promotions p CROSS JOIN LATERAL jsonb_to_recordset(p.saved) AS x(schema text, "table" text) WHERE p.id = $1',
    [promotionId],
  );
  const touched = [...new Set([...images.rows.map((t) => qualified(t.schema, t.table)), ...saved.rows.map((t) => qualified(t.schema, t.table))])];
  const gaps = uniqueGaps([
    ...(await tableGaps(
      c,
      role,
      images.rows.flatMap((t) => rowNeeds(qualified(t.schema, t.table), t)),
    )),
    ...(await pauseGaps(c, role, touched, "rollback restores its rows with its triggers and rules paused, which only the table's owner can")),
    ...(await sequenceReadGaps(c, role, "rollback reads production's schema, sequence positions included")),
  ]);
  if (gaps.length > 0) throw refuse(gaps);
}

/** Whether production has Airlock's audit tables for this role to read. */
export type AuditAccess = { readonly schema: false } | { readonly schema: true };

/**
 * Checks that the connected role may read production's audit trail: nothing to read when there is no airlock
 * schema yet (said so, not an error); an AirlockError naming the GRANTs when it exists and the role may not.
 */
export async function checkAuditPrivileges(c: pg.ClientBase): Promise<AuditAccess> {
  const r = await query<{ exists: boolean; usage: boolean; unreadable: string[] }>(
    c,
    `SELECT n.oid IS NOT NULL AS exists, coalesce(pg_catalog.has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
            coalesce((SELECT array_agg(t.relname::text ORDER BY t.relname) FROM pg_catalog.pg_class t
                       WHERE t.relnamespace = n.oid AND t.relname IN ('audit_log', 'audit_head') AND NOT pg_catalog.has_table_privilege(t.oid, 'SELECT')), '{}') AS unreadable
       FROM (SELECT 1) x LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'airlock'`,
  );
  const s = r.rows[0]!;
  if (!s.exists) return { schema: false };
  if (s.usage && s.unreadable.length === 0) return { schema: true };
  const role = await currentRole(c);
  const to = quoteIdent(role);
  const gaps: PrivilegeGap[] = [
    ...(s.usage ? [] : [{ need: "USAGE on schema airlock", why: "the audit trail lives there", grant: `GRANT USAGE ON SCHEMA airlock TO ${to}` }]),
    ...s.unreadable.map((t) => ({
      need: `SELECT on table airlock.${t}`,
      why: "audit reads the production trail and its head",
      grant: `GRANT SELECT ON TABLE airlock.${quoteIdent(t)} TO ${to}`,
    })),
  ];
  throw new AirlockError("AIRLOCK_AUDIT_PRIVILEGES", `role ${role} cannot read production's audit trail:\n${listGaps(gaps)}`, {
    hint: `as an administrator (or the airlock schema's owner): ${grants(gaps)} — the audit role needs ${STEP_ROLES.audit} (README "Roles and privileges")`,
    details: { role, missing: gaps },
  });
}
