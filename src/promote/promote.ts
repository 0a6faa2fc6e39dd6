/**
 * `airlock promote <diff> --to <production>`: one connection, one
 * transaction, timeouts set, an advisory lock against a second promotion.
 * In it: lock and check every touched row against the snapshot, save the
 * pre-image of every row to be updated or deleted and the data of every
 * column or table to be dropped, apply the diff with the same function the
 * replay verified, save post-images, write the audit entry, commit. Any
 * conflict, error or kill leaves production exactly as it was.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import type { Project } from "../config/load.ts";
import { readDiff } from "../diff/store.ts";
import type { Diff, TableChanges } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { type PgTarget, openClient, query, quoteIdent } from "../pg/connect.ts";
import { KeyedHmac } from "../snapshot/keyed-hmac.ts";
import { readManifest, snapshotDir, snapshotsDir } from "../snapshot/store.ts";
import { type ApplyOptions, applyDiff, diffTableNames } from "./apply.ts";
import { checkCodeOwners } from "./run-as.ts";
import { checkCanPauseTriggers } from "./triggers.ts";
import { refusalFor, requireApproval } from "./approval.ts";
import { type Conflict, lockAndCheck } from "./conflicts.ts";
import { ensureProductionSchema, recordProductionEvent } from "./production-schema.ts";
import { rekeyInserts } from "./rekey.ts";
import { keyAfter, keyBefore, keyPredicate, qualified } from "./rows.ts";

/** Options of a promotion. */
export interface PromoteOptions extends ApplyOptions {
  readonly to: PgTarget;
  readonly secret: string | undefined;
  readonly dryRun?: boolean;
  /** Give rows inserted into sequence-keyed tables fresh keys from production (and follow foreign keys). */
  readonly rekey?: boolean;
  /** Who promotes (default: the OS user). */
  readonly by?: string;
}

/** What a promotion did (or, for a dry run, would do). */
export interface PromotionResult {
  readonly promotionId: string;
  readonly diffId: string;
  readonly dryRun: boolean;
  readonly summary: Diff["summary"];
  /** Inserted rows that got fresh keys from production (--rekey). */
  readonly rekeyed: number;
  /** After commit, the touched rows were read back and hold the diff's values. */
  readonly confirmed: boolean;
}

/** A data save made before destructive DDL, for rollback. */
export interface SavedData {
  readonly kind: "table" | "column";
  readonly schema: string;
  readonly table: string;
  readonly column?: string;
  readonly keyColumns: readonly string[];
  readonly savedAs: string;
}

const PROMOTION_LOCK = "airlock/promote";

function conflictError(conflicts: readonly Conflict[], snapshot: string): AirlockError {
  const list = conflicts.slice(0, 20).map((c) => `  - ${c.table} ${c.key}: ${c.kind === "changed" ? "changed in production since the snapshot" : c.kind === "deleted" ? "deleted in production since the snapshot" : "key already taken in production"}`);
  return new AirlockError("AIRLOCK_CONFLICT", `${conflicts.length} conflict${conflicts.length === 1 ? "" : "s"} with production since snapshot ${snapshot}; nothing was changed:\n${list.join("\n")}${conflicts.length > 20 ? `\n  … and ${conflicts.length - 20} more` : ""}`, {
    hint: "take a new snapshot and rerun the session on it, or resolve the rows in production first",
    exitCode: EXIT_REFUSED,
    details: { conflicts },
  });
}

async function keyColumnsOf(c: pg.ClientBase, schema: string, table: string): Promise<string[]> {
  const r = await query<{ a: string }>(
    c,
    `SELECT a.attname AS a FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`,
    [qualified(schema, table)],
  );
  return r.rows.map((x) => x.a);
}

/** Saves the data of every table or column the diff drops (or rebuilds) into the airlock schema. */
async function saveDroppedData(c: pg.ClientBase, diff: Diff, promotionId: string): Promise<SavedData[]> {
  const saved: SavedData[] = [];
  for (const [i, ch] of diff.schemaChanges.entries()) {
    if ((ch.action !== "drop" && ch.action !== "recreate") || (ch.kind !== "table" && ch.kind !== "column")) continue;
    if (ch.target === undefined) continue;
    // A table or column the agent created and dropped again is not in production: nothing to save.
    const exists = await query(c, "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND ($2::text IS NULL OR attname = $2) AND NOT attisdropped LIMIT 1", [qualified(ch.target.schema, ch.target.table), ch.target.column ?? null]);
    if (exists.rowCount === 0) continue;
    const t = { schema: ch.target.schema, table: ch.target.table, column: ch.target.column ?? null };
    const savedAs = `${promotionId.replace(/-/g, "_")}_${i}`;
    const keyColumns = await keyColumnsOf(c, t.schema, t.table);
    const cols = t.column === null ? "*" : [...keyColumns, t.column].map(quoteIdent).join(", ");
    await query(c, `CREATE TABLE airlock.${quoteIdent(savedAs)} AS SELECT ${cols} FROM ${qualified(t.schema, t.table)}`);
    saved.push({ kind: t.column === null ? "table" : "column", schema: t.schema, table: t.table, ...(t.column === null ? {} : { column: t.column }), keyColumns, savedAs });
  }
  return saved;
}

/** Stores row images (full rows as jsonb) for the given keys. */
async function saveImages(c: pg.ClientBase, promotionId: string, t: TableChanges, kind: "pre" | "post", op: string, keys: ReadonlyArray<Readonly<Record<string, string | null>>>): Promise<void> {
  if (keys.length === 0 || t.key === null) return;
  const keyJson = `jsonb_build_object(${t.key.map((k) => `'${k.replace(/'/g, "''")}', ${quoteIdent(k)}::text`).join(", ")})`;
  await query(
    c,
    `INSERT INTO airlock.row_images (promotion_id, table_schema, table_name, kind, op, key, row)
     SELECT $1, $2, $3, $4, $5, ${keyJson}, to_jsonb(r) FROM ${qualified(t.schema, t.name)} r WHERE ${keyPredicate(t, t.key, keys)}`,
    [promotionId, t.schema, t.name, kind, op],
  );
}

/** Reads the touched rows back after commit and checks they hold the diff's values (compared by the server, type-aware). */
async function confirmApplied(c: pg.ClientBase, diff: Diff): Promise<boolean> {
  for (const t of diff.tables) {
    if (t.key === null) continue;
    for (const ch of t.changes) {
      const expected = ch.kind === "insert" ? ch.row : ch.kind === "update" ? ch.new : {};
      const key = ch.kind === "delete" ? keyBefore(ch)! : keyAfter(t, ch)!;
      const params: Array<string | null> = [];
      const conds = Object.entries(expected).map(([col, v]) => {
        params.push(v);
        return `${quoteIdent(col)} IS NOT DISTINCT FROM $${params.length}::${t.columns.find((x) => x.name === col)?.type ?? "text"}`;
      });
      const r = await query<{ n: number }>(c, `SELECT count(*)::int AS n FROM ${qualified(t.schema, t.name)} WHERE ${keyPredicate(t, t.key, [key])}${conds.map((x) => ` AND ${x}`).join("")}`, params);
      if (r.rows[0]!.n !== (ch.kind === "delete" ? 0 : 1)) return false;
    }
  }
  return true;
}

/** Promotes an approved, verified diff to production (or rehearses it with dryRun). */
export async function promoteDiff(project: Project, idOrPrefix: string, options: PromoteOptions): Promise<PromotionResult> {
  const { id, diff: reviewed, dir } = readDiff(project, idOrPrefix);
  let diff = reviewed;
  const approval = requireApproval(dir, id);
  const refusal = refusalFor(diff, approval.accepted);
  if (refusal !== undefined) throw refusal;
  const manifest = readManifest(snapshotsDir(project.statePath()), diff.snapshot);
  const secret = options.secret;
  if (secret === undefined || new KeyedHmac(secret).digest("airlock/secret-fingerprint").toString("hex").slice(0, 16) !== manifest.secretFingerprint) {
    throw new AirlockError("AIRLOCK_SECRET_MISMATCH", `AIRLOCK_SECRET is ${secret === undefined ? "not set" : "not the one"} snapshot ${diff.snapshot} was taken with; conflicts cannot be checked`, {
      hint: "set the AIRLOCK_SECRET the snapshot was captured with",
      exitCode: EXIT_REFUSED,
    });
  }
  const by = options.by ?? defaultActor();
  const promotionId = `p-${new Date().toISOString().replace(/[-:TZ.]/g, "").slice(0, 14)}-${randomBytes(3).toString("hex")}`;
  const dryRun = options.dryRun === true;
  const c = await openClient(options.to, { step: "promote", statementTimeoutMs: project.config.promote.statementTimeout, lockTimeoutMs: project.config.promote.lockTimeout });
  try {
    await query(c, "BEGIN");
    const locked = await query<{ ok: boolean }>(c, "SELECT pg_try_advisory_xact_lock(hashtext($1)) AS ok", [PROMOTION_LOCK]);
    if (locked.rows[0]?.ok !== true) {
      throw new AirlockError("AIRLOCK_PROMOTION_BUSY", "another promotion or rollback is running on this database", { hint: "wait for it to finish, then run this again" });
    }
    // Refused before anything is locked, saved or changed: the rows are written with the tables' triggers
    // paused, and DDL that would run the agent's functions must not run them as a superuser.
    await checkCanPauseTriggers(c, diffTableNames(diff));
    await checkCodeOwners(c, diff);
    await ensureProductionSchema(c);
    let remapped = 0;
    if (options.rekey === true) ({ diff, remapped } = await rekeyInserts(c, reviewed));
    const conflicts = await lockAndCheck(c, diff, manifest, snapshotDir(snapshotsDir(project.statePath()), diff.snapshot), secret);
    if (conflicts.length > 0) {
      await query(c, "ROLLBACK");
      // The refused attempt reached production: record it there, in its own small transaction.
      await query(c, "BEGIN");
      await ensureProductionSchema(c);
      await recordProductionEvent(c, { actor: by, action: "promote-refused", details: { diff: id, session: diff.session, snapshot: diff.snapshot, conflicts: conflicts.length, dryRun } });
      await query(c, "COMMIT");
      recordEvent(project, { actor: by, action: "promote-refused", details: { diff: id, conflicts: conflicts.length } });
      throw conflictError(conflicts, diff.snapshot);
    }
    const saved = await saveDroppedData(c, diff, promotionId);
    await query(c, `INSERT INTO airlock.promotions (id, diff_id, approved_by, promoted_by, state, summary, reverse_schema, saved, tables) VALUES ($1, $2, $3, $4, 'applied', $5, $6, $7, $8)`, [
      promotionId,
      id,
      approval.approvedBy,
      by,
      JSON.stringify(diff.summary),
      JSON.stringify(diff.reverseSchema),
      JSON.stringify(saved),
      JSON.stringify(diff.tables.map((t) => `${t.schema}.${t.name}`)),
    ]);
    for (const t of diff.tables) {
      await saveImages(c, promotionId, t, "pre", "update", t.changes.filter((ch) => ch.kind === "update").map((ch) => keyBefore(ch)!));
      await saveImages(c, promotionId, t, "pre", "delete", t.changes.filter((ch) => ch.kind === "delete").map((ch) => keyBefore(ch)!));
    }
    await applyDiff(c, diff, options);
    for (const t of diff.tables) {
      await saveImages(c, promotionId, t, "post", "update", t.changes.filter((ch) => ch.kind === "update").map((ch) => keyAfter(t, ch)!));
      await saveImages(c, promotionId, t, "post", "insert", t.changes.filter((ch) => ch.kind === "insert").map((ch) => keyAfter(t, ch)!).filter((k) => k !== null));
    }
    await recordProductionEvent(c, {
      actor: by,
      action: dryRun ? "promote-dry-run" : "promote",
      details: { promotion: promotionId, diff: id, session: diff.session, snapshot: diff.snapshot, approvedBy: approval.approvedBy, accepted: approval.accepted, summary: diff.summary, rekeyed: remapped },
    });
    if (dryRun) {
      await query(c, "ROLLBACK");
      return { promotionId, diffId: id, dryRun, summary: diff.summary, rekeyed: remapped, confirmed: false };
    }
    await query(c, "COMMIT");
    const confirmed = await confirmApplied(c, diff);
    recordEvent(project, { actor: by, action: "promote", details: { promotion: promotionId, diff: id, session: diff.session, confirmed, summary: diff.summary } });
    return { promotionId, diffId: id, dryRun, summary: diff.summary, rekeyed: remapped, confirmed };
  } catch (e) {
    await c.query("ROLLBACK").catch(() => undefined);
    throw e;
  } finally {
    await c.end().catch(() => undefined);
  }
}
