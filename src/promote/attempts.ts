/**
 * Every promotion or rollback attempt leaves a trace, whatever its outcome.
 * The staging trail records each one: refused before production was
 * reached (no approval, a diff or approval whose MAC does not hold), refused
 * in production (conflict, approval used, rolled back already), dry runs,
 * and failures (lock timeout, lost connection). Production records a
 * refusal that reached it in its own small transaction on the same
 * connection, after the main transaction rolled back, and the refusal's
 * message says exactly what that wrote. A failure is recorded in staging
 * only: the connection it happened on may be gone.
 */
import type pg from "pg";
import type { AuditEntry } from "../audit/chain.ts";
import { recordEvent, stagingHead } from "../audit/journal.ts";
import type { Project } from "../config/load.ts";
import { AirlockError, EXIT_REFUSED, isAirlockError } from "../errors.ts";
import { inTransaction } from "../pg/connect.ts";
import {
  type ProductionIdentity,
  anchorFor,
  ensureAuditTables,
  hasAirlockSchema,
  hasAuditTables,
  productionKey,
  recordProductionEvent,
} from "./production-schema.ts";

/** Who attempts what: the facts every entry of the attempt carries (ids, never a production value). */
export interface Attempt {
  readonly project: Project;
  readonly secret: string | undefined;
  readonly actor: string;
  readonly kind: "promote" | "rollback";
  readonly details: Readonly<Record<string, unknown>>;
}

/** True for a refusal (exit 2), as opposed to a failure. */
export function isRefusal(e: unknown): e is AirlockError {
  return isAirlockError(e) && e.exitCode === EXIT_REFUSED;
}

// The code and sqlstate only: an error's message or detail may quote a production value.
function errorFacts(e: unknown): Record<string, unknown> {
  if (!isAirlockError(e)) return { code: "AIRLOCK_INTERNAL" };
  const count = Array.isArray(e.details?.conflicts) ? e.details.conflicts.length : Array.isArray(e.details?.changed) ? e.details.changed.length : undefined;
  return { code: e.code, ...(e.pg?.sqlstate === undefined ? {} : { sqlstate: e.pg.sqlstate }), ...(count === undefined ? {} : { conflicts: count }) };
}

function action(attempt: Attempt, e: unknown): string {
  return `${attempt.kind}-${isRefusal(e) ? "refused" : "failed"}`;
}

/** Records an attempt that ended before production was reached, in the staging trail. */
export function recordLocalAttempt(attempt: Attempt, e: unknown): void {
  recordEvent(
    attempt.project,
    { actor: attempt.actor, action: action(attempt, e), details: { ...attempt.details, ...errorFacts(e), production: "not reached" } },
    attempt.secret,
  );
}

/** Records a successful step (or a dry run) in the staging trail, anchored to the production entry it wrote, if any. */
export function recordOutcome(
  attempt: Attempt,
  act: string,
  details: Record<string, unknown>,
  production?: { identity: ProductionIdentity; entry: AuditEntry },
): void {
  recordEvent(
    attempt.project,
    {
      actor: attempt.actor,
      action: act,
      details: { ...attempt.details, ...details, ...(production === undefined ? {} : { productionEntry: anchorFor(production.identity, production.entry) }) },
    },
    attempt.secret,
  );
}

/** Writes a production audit entry for a refusal in its own transaction; what it wrote, or why it could not. */
async function recordRefusalInProduction(
  c: pg.ClientBase,
  attempt: Attempt,
  e: AirlockError,
): Promise<{ entry: AuditEntry; created: "schema" | "tables" | null } | { failed: string }> {
  if (attempt.secret === undefined) return { failed: "no AIRLOCK_SECRET" };
  try {
    const secret = attempt.secret;
    return await inTransaction(c, async () => {
      const created = !(await hasAirlockSchema(c)) ? "schema" : !(await hasAuditTables(c)) ? "tables" : null;
      await ensureAuditTables(c);
      const entry = await recordProductionEvent(c, productionKey(secret), {
        actor: attempt.actor,
        action: action(attempt, e),
        details: { ...attempt.details, ...errorFacts(e), stagingHead: stagingHead(attempt.project) },
      });
      return { entry, created };
    });
  } catch (err) {
    return { failed: isAirlockError(err) ? err.code : "AIRLOCK_INTERNAL" };
  }
}

/**
 * After the main transaction of an attempt rolled back: records a refusal in production (own small transaction)
 * and in staging, or a failure in staging; returns the error to throw, a refusal's message saying what was written.
 */
export async function recordFailedAttempt(c: pg.ClientBase, identity: ProductionIdentity | undefined, attempt: Attempt, e: unknown): Promise<unknown> {
  if (!isRefusal(e) || identity === undefined) {
    recordEvent(
      attempt.project,
      { actor: attempt.actor, action: action(attempt, e), details: { ...attempt.details, ...errorFacts(e), production: "rolled back" } },
      attempt.secret,
    );
    return e;
  }
  const written = await recordRefusalInProduction(c, attempt, e);
  if ("failed" in written) {
    recordEvent(
      attempt.project,
      { actor: attempt.actor, action: action(attempt, e), details: { ...attempt.details, ...errorFacts(e), production: `not recorded (${written.failed})` } },
      attempt.secret,
    );
    return withWritten(e, `production was not changed, and this refusal could not be recorded there (${written.failed})`, { recorded: false });
  }
  recordOutcome(attempt, action(attempt, e), errorFacts(e), { identity, entry: written.entry });
  const created = {
    schema: " (which created the airlock schema with its audit tables, airlock.audit_log and airlock.audit_head)",
    tables: " (which created airlock.audit_log and airlock.audit_head, missing until then)",
  };
  const what = `production's data and schema were not changed; the refusal was recorded there as entry ${written.entry.seq} of airlock.audit_log${written.created === null ? "" : created[written.created]}, and nothing else was written`;
  return withWritten(e, what, { recorded: written.entry.seq, created: written.created });
}

function withWritten(e: AirlockError, what: string, production: Record<string, unknown>): AirlockError {
  return new AirlockError(e.code, `${e.message}\n${what}`, {
    exitCode: e.exitCode,
    cause: e,
    ...(e.hint === undefined ? {} : { hint: e.hint }),
    ...(e.pg === undefined ? {} : { pg: e.pg }),
    details: { ...e.details, production },
  });
}
