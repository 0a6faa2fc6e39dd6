/**
 * `airlock promote <diff> --to <production>`: one connection, one
 * transaction, timeouts set, an advisory lock against a second promotion.
 * Before production is reached: AIRLOCK_SECRET, the diff's MAC, the
 * approval's MAC and its binding to this diff. In the transaction: claim the
 * approval (one approval, one promotion, enforced by production's primary
 * key), lock and check every touched row against the snapshot, save the
 * pre-image of every row to be updated or deleted and the data of every
 * column or table to be dropped (saved-data.ts), apply the diff with the
 * same function the replay verified, save post-images, write the keyed
 * audit entry (anchored to the staging trail's head), commit. Any
 * conflict, error or kill leaves production exactly as it was; every
 * attempt is recorded (attempts.ts).
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { AuditEntry } from "../audit/chain.ts";
import { defaultActor } from "../audit/chain.ts";
import { stagingHead } from "../audit/journal.ts";
import { requireSecret, secretFromEnv } from "../config/keys.ts";
import type { Project } from "../config/load.ts";
import { readDiff } from "../diff/store.ts";
import type { Diff } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { type PgTarget, inTransaction, openClient, query } from "../pg/connect.ts";
import { type SnapshotManifest, readManifest, snapshotDir, snapshotsDir } from "../snapshot/store.ts";
import { type ApplyOptions, applyDiff } from "../apply/apply.ts";
import { diffTableNames } from "../apply/statements.ts";
import { type Approval, checkSecretAndMac, refusalFor, requireApproval } from "./approval.ts";
import { type Attempt, recordFailedAttempt, recordLocalAttempt, recordOutcome } from "./attempts.ts";
import { type Conflict, lockAndCheck } from "./conflicts.ts";
import {
  type ProductionIdentity,
  approvalUsedBy,
  claimApproval,
  ensureProductionSchema,
  productionIdentity,
  productionKey,
  recordProductionEvent,
} from "./production-schema.ts";
import { checkCodeOwners } from "../apply/run-as.ts";
import { checkCanPauseTriggers } from "../apply/triggers.ts";
import { rekeyInserts } from "./rekey.ts";
import { saveWholeRowImages } from "./multiset.ts";
import { saveSequenceChanges } from "../apply/sequences.ts";
import { type PromotionCatalog, planReverse, productionCatalog } from "./reverse.ts";
import { checkPromotePrivileges } from "./privileges.ts";
import { confirmApplied, saveDroppedData, savePostImages, savePreImages } from "./saved-data.ts";
import { plural } from "../format/plural.ts";

/** Options of a promotion. */
export interface PromoteOptions extends ApplyOptions {
  readonly to: PgTarget;
  /** AIRLOCK_SECRET (default: the environment). */
  readonly secret?: string | undefined;
  readonly dryRun?: boolean;
  /** Give rows inserted into sequence-keyed tables fresh keys from production (and follow foreign keys). */
  readonly rekey?: boolean;
  /** Who promotes (default: the OS user). */
  readonly by?: string;
  /** Told each phase as it starts (nothing of production's data: phases only). */
  readonly onProgress?: (p: PromoteProgress) => void;
}

/**
 * The phases of a promotion: `connect` (to production, once the diff and its approval are checked here),
 * `privileges` (the approval unused, the role's privileges), `conflicts` (the touched rows locked and checked
 * against the snapshot), `backup` (what the diff changes saved for a rollback), `apply`, `record` (the way
 * back, post-images, the audit entry), `commit` (or, for a dry run, the rollback), `confirm` (rows read back).
 */
export type PromoteProgress = {
  readonly phase: "connect" | "privileges" | "conflicts" | "backup" | "apply" | "record" | "commit" | "confirm";
};

/** What a promotion did (or, for a dry run, would do). */
export interface PromotionResult {
  readonly promotionId: string;
  readonly diffId: string;
  /** The approval this promotion used up (a dry run does not use it). */
  readonly approvalId: string;
  readonly dryRun: boolean;
  readonly summary: Diff["summary"];
  /** Inserted rows that got fresh keys from production (--rekey). */
  readonly rekeyed: number;
  /** After commit, the touched rows were read back and hold the diff's values. */
  readonly confirmed: boolean;
}

const PROMOTION_LOCK = "airlock/promote";

function conflictError(conflicts: readonly Conflict[], snapshot: string): AirlockError {
  const list = conflicts
    .slice(0, 20)
    .map(
      (c) =>
        `  - ${c.table} ${c.key}: ${c.kind === "changed" ? "changed in production since the snapshot" : c.kind === "deleted" ? "deleted in production since the snapshot" : "key already taken in production"}`,
    );
  return new AirlockError(
    "AIRLOCK_CONFLICT",
    `${plural(conflicts.length, "conflict")} with production since snapshot ${snapshot}; the diff was not applied:\n${list.join("\n")}${conflicts.length > 20 ? `\n  … and ${conflicts.length - 20} more` : ""}`,
    {
      hint: "take a new snapshot and rerun the session on it, or resolve the rows in production first",
      exitCode: EXIT_REFUSED,
      details: { conflicts },
    },
  );
}

/** What was checked before production is reached. */
interface Prepared {
  readonly id: string;
  readonly diff: Diff;
  readonly approval: Approval;
  readonly manifest: SnapshotManifest;
  readonly secret: string;
}

/** Everything checked before production is reached: the secret, the diff's MAC, the approval's MAC and binding, verification and hazards. */
function preparePromotion(
  project: Project,
  idOrPrefix: string,
  secretOption: string | undefined,
  onProgress: (facts: Record<string, unknown>) => void,
): Prepared {
  // The diff named first, then the environment: in the order a user reads the command.
  const read = readDiff(project, idOrPrefix);
  const secret = requireSecret(secretOption, "airlock promote");
  onProgress({ diff: read.id, session: read.diff.session, snapshot: read.diff.snapshot });
  checkSecretAndMac(project, read, secret, "airlock promote");
  const approval = requireApproval(read.dir, read.id, secret);
  onProgress({ approval: approval.id });
  const refusal = refusalFor(read.diff, approval.accepted);
  if (refusal !== undefined) throw refusal;
  return { id: read.id, diff: read.diff, approval, manifest: readManifest(snapshotsDir(project.statePath()), read.diff.snapshot), secret };
}

function approvalUsedError(approval: Approval, promotion: string | undefined): AirlockError {
  return new AirlockError(
    "AIRLOCK_APPROVAL_USED",
    `approval ${approval.id} (by ${approval.approvedBy}) was used already${promotion === undefined ? "" : ` by promotion ${promotion}`}: an approval authorises one promotion, and stays used after a rollback`,
    {
      hint: `review the diff again and approve it anew: \`airlock approve ${approval.diffId.slice(0, 12)} --by <your name>\``,
      exitCode: EXIT_REFUSED,
      details: { approval: approval.id, ...(promotion === undefined ? {} : { usedBy: promotion }) },
    },
  );
}

/** The promotion's steps, in the caller's transaction; returns the production entry it wrote (none for a dry run, which is rolled back). */
async function promoteInTransaction(
  c: pg.ClientBase,
  project: Project,
  p: Prepared,
  options: PromoteOptions,
  ids: { promotionId: string; by: string },
): Promise<{ diff: Diff; remapped: number; entry: AuditEntry | undefined }> {
  const { id, approval, manifest, secret } = p;
  const { promotionId, by } = ids;
  const dryRun = options.dryRun === true;
  options.onProgress?.({ phase: "privileges" });
  const locked = await query<{ ok: boolean }>(c, "SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok", [PROMOTION_LOCK]);
  if (locked.rows[0]?.ok !== true) {
    throw new AirlockError("AIRLOCK_PROMOTION_BUSY", "another promotion or rollback is running on this database", {
      hint: "wait for it to finish, then run this again",
    });
  }
  // One approval, one promotion: a used approval is refused first (read only), …
  const usedBy = await approvalUsedBy(c, approval.id);
  if (usedBy !== undefined) throw approvalUsedError(approval, usedBy);
  // Refused before anything is locked, saved or changed: the rows are written with the tables' triggers
  // paused, and DDL that would run the agent's functions must not run them as a superuser.
  await checkCanPauseTriggers(c, diffTableNames(p.diff));
  // Everything else the role needs here and for the rollback, named at once (src/promote/privileges.ts).
  await checkPromotePrivileges(c, p.diff);
  await checkCodeOwners(c, p.diff);
  await ensureProductionSchema(c);
  // … and claimed under production's primary key, which decides between two promotions at once (a dry run's claim
  // rolls back with it).
  if (!(await claimApproval(c, { approvalId: approval.id, diffId: id, promotionId }))) throw approvalUsedError(approval, await approvalUsedBy(c, approval.id));
  // Production's own schema before anything changes: the rollback plans its way back to it and checks it got there.
  const catalogBefore = await productionCatalog(c);
  let diff = p.diff;
  let remapped = 0;
  options.onProgress?.({ phase: "conflicts" });
  if (options.rekey === true) ({ diff, remapped } = await rekeyInserts(c, p.diff));
  const conflicts = await lockAndCheck(c, diff, manifest, snapshotDir(snapshotsDir(project.statePath()), diff.snapshot), secret);
  if (conflicts.length > 0) throw conflictError(conflicts, diff.snapshot);
  options.onProgress?.({ phase: "backup" });
  const saved = await saveDroppedData(c, diff, promotionId);
  await query(
    c,
    `INSERT INTO airlock.promotions (id, diff_id, approved_by, promoted_by, state, summary, reverse_schema, saved, tables) VALUES ($1, $2, $3, $4, 'applied', $5, $6, $7, $8)`,
    [
      promotionId,
      id,
      approval.approvedBy,
      by,
      JSON.stringify(diff.summary),
      // The way back is planned once the diff is applied, from production's own catalog (below).
      JSON.stringify({ before: [], after: [] }),
      JSON.stringify(saved),
      JSON.stringify(diff.tables.map((t) => `${t.schema}.${t.name}`)),
    ],
  );
  await savePreImages(c, promotionId, diff);
  options.onProgress?.({ phase: "apply" });
  const applied = await applyDiff(c, diff, options);
  options.onProgress?.({ phase: "record" });
  // Planned here, from what production holds now, so recreated objects get back production's own owners and grants;
  // a change that could not be undone exactly is refused before anything commits.
  const catalogAfter = await productionCatalog(c);
  const reverse = planReverse(catalogAfter, catalogBefore);
  await query(c, "UPDATE airlock.promotions SET reverse_schema = $2, catalog = $3 WHERE id = $1", [
    promotionId,
    JSON.stringify(reverse),
    JSON.stringify({ before: catalogBefore, after: catalogAfter } satisfies PromotionCatalog),
  ]);
  await saveSequenceChanges(c, promotionId);
  // Tables without a key: every row written or deleted, whole (src/promote/multiset.ts).
  await saveWholeRowImages(c, promotionId, applied.wholeRows);
  await savePostImages(c, promotionId, diff);
  const entry = await recordProductionEvent(c, productionKey(secret), {
    actor: by,
    action: dryRun ? "promote-dry-run" : "promote",
    details: {
      promotion: promotionId,
      diff: id,
      approval: approval.id,
      session: diff.session,
      snapshot: diff.snapshot,
      approvedBy: approval.approvedBy,
      accepted: approval.accepted,
      summary: diff.summary,
      rekeyed: remapped,
      stagingHead: stagingHead(project),
    },
  });
  options.onProgress?.({ phase: "commit" });
  return { diff, remapped, entry: dryRun ? undefined : entry };
}

/** Promotes an approved, verified diff to production (or rehearses it with dryRun); every attempt is recorded. */
export async function promoteDiff(project: Project, idOrPrefix: string, options: PromoteOptions): Promise<PromotionResult> {
  const by = options.by ?? defaultActor();
  const dryRun = options.dryRun === true;
  const facts: Record<string, unknown> = { diff: idOrPrefix, dryRun };
  const secret = secretFromEnv(options.secret);
  const attempt = (): Attempt => ({ project, secret, actor: by, kind: "promote", details: { ...facts } });
  let prepared: Prepared;
  let c: pg.Client;
  const promotionId = `p-${new Date()
    .toISOString()
    .replace(/[-:TZ.]/g, "")
    .slice(0, 14)}-${randomBytes(3).toString("hex")}`;
  try {
    prepared = preparePromotion(project, idOrPrefix, secret, (f) => Object.assign(facts, f));
    options.onProgress?.({ phase: "connect" });
    c = await openClient(options.to, {
      step: "promote",
      statementTimeoutMs: project.config.promote.statementTimeout,
      lockTimeoutMs: project.config.promote.lockTimeout,
    });
  } catch (e) {
    recordLocalAttempt(attempt(), e);
    throw e;
  }
  try {
    let identity: ProductionIdentity | undefined;
    let done: Awaited<ReturnType<typeof promoteInTransaction>>;
    try {
      identity = await productionIdentity(c, options.to);
      done = await inTransaction(c, () => promoteInTransaction(c, project, prepared, options, { promotionId, by }), { commit: () => !dryRun });
    } catch (e) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw await recordFailedAttempt(c, identity, attempt(), e);
    }
    const { diff, remapped, entry } = done;
    const result = { promotionId, diffId: prepared.id, approvalId: prepared.approval.id, dryRun, summary: diff.summary, rekeyed: remapped };
    if (entry === undefined) {
      recordOutcome(attempt(), "promote-dry-run", { promotion: promotionId, summary: diff.summary, rekeyed: remapped, production: "rolled back" });
      return { ...result, confirmed: false };
    }
    // Committed: a failed read-back must not keep the promotion out of the staging trail.
    options.onProgress?.({ phase: "confirm" });
    const confirmed = await confirmApplied(c, diff).catch(() => false);
    recordOutcome(attempt(), "promote", { promotion: promotionId, confirmed, summary: diff.summary, rekeyed: remapped }, { identity, entry });
    return { ...result, confirmed };
  } finally {
    await c.end().catch(() => undefined);
  }
}
