/**
 * `airlock rollback <promotion> --to <production>`: one transaction that
 * undoes a promotion from what it saved in production: inserted rows
 * deleted, updated rows restored from their pre-images, deleted rows put
 * back (tables without a key as multisets: src/promote/multiset.ts), the
 * schema changes reversed and dropped columns and tables refilled.
 * It first checks that no promoted row changed since the promotion (a
 * conflict otherwise) and refuses a promotion already rolled back. Every
 * attempt is recorded (attempts.ts); the approval the promotion used stays
 * used, so promoting the diff again needs a new approval.
 */
import type pg from "pg";
import { type AuditEntry, defaultActor } from "../audit/chain.ts";
import { stagingHead } from "../audit/journal.ts";
import { requireSecret, secretFromEnv } from "../config/keys.ts";
import type { Project } from "../config/load.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { type PgTarget, inTransaction, openClient, query, quoteIdent } from "../pg/connect.ts";
import { type Attempt, recordFailedAttempt, recordLocalAttempt, recordOutcome } from "./attempts.ts";
import { type ProductionIdentity, ensureProductionSchema, productionIdentity, productionKey, recordProductionEvent } from "./production-schema.ts";
import { deferChecks, settleChecks } from "../apply/deferred.ts";
import { NO_KEY_IMAGE, missingWholeRows, removeInsertedWholeRows, restoreDeletedWholeRows, wholeRowTables } from "./multiset.ts";
import { restoreSequences } from "../apply/sequences.ts";
import { type PromotionCatalog, type ReversePlan, checkRestoredSchema, checkSchemaSincePromotion, saveRebuiltRows } from "./reverse.ts";
import { checkRollbackPrivileges } from "./privileges.ts";
import { pauseTriggers, resumeTriggers } from "../apply/triggers.ts";
import type { SavedData } from "./saved-data.ts";
import { ownRowsIn, qualified, writableColumns } from "../pg/table-names.ts";
import { plural } from "../format/plural.ts";

interface Image {
  readonly table_schema: string;
  readonly table_name: string;
  readonly kind: "pre" | "post";
  readonly op: "insert" | "update" | "delete";
  readonly key: Record<string, string | null>;
  readonly row: Record<string, unknown>;
}

/** `k1 = $n AND …` for a key stored as text values (the server casts each to its column's type, so the index is used). */
function keyMatch(key: Record<string, string | null>, params: unknown[]): string {
  return Object.entries(key)
    .map(([col, v]) => {
      params.push(v);
      return `${quoteIdent(col)} = $${params.length}`;
    })
    .join(" AND ");
}

/**
 * The phases of a rollback: `connect` (to production), `check` (the promotion, the role's privileges, every row
 * it wrote still as it wrote it), `restore` (the saved rows put back), `schema` (the schema changes reversed,
 * dropped data refilled), `verify` (sequences back, the schema checked to be production's before the promotion),
 * `commit`.
 */
export type RollbackProgress = { readonly phase: "connect" | "check" | "restore" | "schema" | "verify" | "commit" };

/** The rollback's steps, in the caller's transaction: restores, reverses, records the keyed production entry. */
async function rollbackInTransaction(
  c: pg.ClientBase,
  project: Project,
  promotionId: string,
  by: string,
  secret: string,
  report: (p: RollbackProgress) => void = () => undefined,
): Promise<{ restored: number; schemaStatements: number; diffId: string; entry: AuditEntry }> {
  const locked = await query<{ ok: boolean }>(c, "SELECT pg_try_advisory_xact_lock(hashtext('airlock/promote')) AS ok");
  if (locked.rows[0]?.ok !== true)
    throw new AirlockError("AIRLOCK_PROMOTION_BUSY", "another promotion or rollback is running on this database", {
      hint: "wait for it to finish, then run this again",
    });
  report({ phase: "check" });
  await ensureProductionSchema(c);
  await checkRollbackPrivileges(c, promotionId);
  const p = await query<{
    state: string;
    reverse_schema: string[] | ReversePlan;
    saved: SavedData[];
    tables: string[];
    diff_id: string;
    catalog: PromotionCatalog | null;
  }>(c, "SELECT state, reverse_schema, saved, tables, diff_id, catalog FROM airlock.promotions WHERE id = $1 FOR UPDATE", [promotionId]);
  const promotion = p.rows[0];
  if (promotion === undefined) {
    throw new AirlockError("AIRLOCK_PROMOTION_NOT_FOUND", `no promotion ${promotionId} in this database`, {
      hint: "see `airlock audit --to <url>` for the promotions made here",
    });
  }
  if (promotion.state === "rolled_back") {
    throw new AirlockError("AIRLOCK_ALREADY_ROLLED_BACK", `promotion ${promotionId} was rolled back already`, {
      hint: "nothing to do",
      exitCode: EXIT_REFUSED,
    });
  }
  // The schema must still be the promoted one: a rollback reverses only what the promotion did (src/promote/reverse.ts).
  const refreshed = promotion.catalog === null ? new Set<string>() : await checkSchemaSincePromotion(c, promotion.catalog.after, promotionId);
  // Rows of tables without a key are images with an empty key, restored as a multiset (src/promote/multiset.ts).
  const images = (
    await query<Image>(c, "SELECT table_schema, table_name, kind, op, key, row FROM airlock.row_images WHERE promotion_id = $1 AND key <> $2::jsonb", [
      promotionId,
      NO_KEY_IMAGE,
    ])
  ).rows;
  const keyless = await wholeRowTables(c, promotionId);

  // Each table's own rows (never those of a table inheriting from it: src/pg/table-names.ts).
  const rowsOf = await ownRowsIn(
    c,
    images.map((i) => ({ schema: i.table_schema, table: i.table_name })),
  );
  // Every row the promotion wrote must still be as it wrote it.
  const changed: string[] = [];
  for (const img of images) {
    const params: unknown[] = [];
    const where = keyMatch(img.key, params);
    const r = await query<{ row: unknown }>(
      c,
      `SELECT to_jsonb(r) AS row FROM ${rowsOf(img.table_schema, img.table_name)} r WHERE ${where} FOR UPDATE`,
      params,
    );
    if (img.kind === "post" && (r.rowCount !== 1 || JSON.stringify(r.rows[0]!.row) !== JSON.stringify(img.row)))
      changed.push(`${img.table_schema}.${img.table_name} ${JSON.stringify(img.key)}`);
    if (img.kind === "pre" && img.op === "delete" && r.rowCount !== 0)
      changed.push(`${img.table_schema}.${img.table_name} ${JSON.stringify(img.key)} (deleted key re-used)`);
  }
  changed.push(...(await missingWholeRows(c, promotionId, keyless)));
  if (changed.length > 0) {
    throw new AirlockError(
      "AIRLOCK_CONFLICT",
      `${plural(changed.length, "row")} changed in production since promotion ${promotionId}; nothing was rolled back:\n${changed
        .slice(0, 20)
        .map((x) => `  - ${x}`)
        .join("\n")}`,
      {
        hint: "resolve those rows by hand, or leave the promotion in place",
        exitCode: EXIT_REFUSED,
        details: { changed },
      },
    );
  }

  // Restoring saved rows must put back exactly what was there: user triggers and rules (an updated_at
  // stamp, say) are paused for the restore and put back before commit, as a promotion does.
  const touched = [
    ...new Set([
      ...images.map((i) => qualified(i.table_schema, i.table_name)),
      ...keyless.map((t) => qualified(t.schema, t.table)),
      ...promotion.saved.map((x) => qualified(x.schema, x.table)),
    ]),
  ];
  report({ phase: "restore" });
  const paused = await pauseTriggers(c, touched);
  // Rows of a cycle of deferrable foreign keys go and come back in any order (src/apply/deferred.ts).
  await deferChecks(c);
  const order = promotion.tables;
  const rank = (img: Image) => order.indexOf(`${img.table_schema}.${img.table_name}`);
  // Keyless tables are children more often than parents: their rows go first and come back last.
  let restored = await removeInsertedWholeRows(c, promotionId, keyless);
  // Children first when deleting what the promotion inserted; parents first when putting rows back.
  for (const img of images.filter((i) => i.kind === "post" && i.op === "insert").sort((a, b) => rank(b) - rank(a))) {
    const params: unknown[] = [];
    await query(c, `DELETE FROM ${rowsOf(img.table_schema, img.table_name)} WHERE ${keyMatch(img.key, params)}`, params);
    restored++;
  }
  for (const img of images.filter((i) => i.kind === "pre" && i.op === "update")) {
    const cols = (await writableColumns(c, qualified(img.table_schema, img.table_name))).filter((col) => col in img.row);
    const params: unknown[] = [JSON.stringify(img.row)];
    const t = qualified(img.table_schema, img.table_name);
    await query(
      c,
      `UPDATE ${rowsOf(img.table_schema, img.table_name)} SET (${cols.map(quoteIdent).join(", ")}) = (SELECT ${cols.map((x) => `p.${quoteIdent(x)}`).join(", ")} FROM jsonb_populate_record(NULL::${t}, $1::jsonb) p) WHERE ${keyMatch(img.key, params)}`,
      params,
    );
    restored++;
  }
  for (const img of images.filter((i) => i.kind === "pre" && i.op === "delete").sort((a, b) => rank(a) - rank(b))) {
    const cols = (await writableColumns(c, qualified(img.table_schema, img.table_name)))
      .filter((col) => col in img.row)
      .map(quoteIdent)
      .join(", ");
    const t = qualified(img.table_schema, img.table_name);
    await query(c, `INSERT INTO ${t} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM jsonb_populate_record(NULL::${t}, $1::jsonb)`, [
      JSON.stringify(img.row),
    ]);
    restored++;
  }
  restored += await restoreDeletedWholeRows(c, promotionId, keyless);
  // Checked before the DDL below: Postgres refuses ALTER or DROP TABLE while checks are pending.
  await settleChecks(c);
  await resumeTriggers(c, paused);
  // Promotions recorded before reverse schema changes were split around the data hold one list.
  const reverse: ReversePlan = Array.isArray(promotion.reverse_schema) ? { before: promotion.reverse_schema, after: [] } : promotion.reverse_schema;
  report({ phase: "schema" });
  await query(c, "SELECT set_config('check_function_bodies', 'off', true)");
  // Tables rebuilt to get their column order back keep their rows (as restored above).
  const rebuilt = await saveRebuiltRows(c, reverse);
  for (const sql of reverse.before) await query(c, sql);
  await rebuilt.refill();
  const restoredTables = promotion.saved.map((x) => qualified(x.schema, x.table));
  const pausedForRefill = await pauseTriggers(c, restoredTables);
  // Looked up again: the reverse schema changes may have made these tables anew.
  const refillRowsOf = await ownRowsIn(c, promotion.saved);
  for (const s of promotion.saved) {
    const t = qualified(s.schema, s.table);
    const saved = `airlock.${quoteIdent(s.savedAs)}`;
    if (s.kind === "table") {
      const cols = (await writableColumns(c, qualified(s.schema, s.table))).map(quoteIdent).join(", ");
      // A table with no copyable columns gets its rows back as rows of defaults.
      await query(c, cols === "" ? `INSERT INTO ${t} SELECT FROM ${saved}` : `INSERT INTO ${t} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${cols} FROM ${saved}`);
    } else {
      const on = s.keyColumns.map((k) => `t.${quoteIdent(k)} = s.${quoteIdent(k)}`).join(" AND ");
      await query(c, `UPDATE ${refillRowsOf(s.schema, s.table)} t SET ${quoteIdent(s.column!)} = s.${quoteIdent(s.column!)} FROM ${saved} s WHERE ${on}`);
    }
  }
  await settleChecks(c);
  await resumeTriggers(c, pausedForRefill);
  // What only holds on the restored data (NOT NULL, constraints) and code (triggers) comes back last.
  for (const sql of reverse.after) await query(c, sql);
  // Sequences last, once the rows are gone: back only where nothing advanced them since (src/apply/sequences.ts).
  report({ phase: "verify" });
  await restoreSequences(c, promotionId);
  await rebuilt.restoreIdentities();
  // Exact or not at all: the schema must now be the one production had before the promotion.
  if (promotion.catalog !== null) await checkRestoredSchema(c, promotion.catalog.before, refreshed, promotionId);
  await query(c, "UPDATE airlock.promotions SET state = 'rolled_back', rolled_back_at = now() WHERE id = $1", [promotionId]);
  const entry = await recordProductionEvent(c, productionKey(secret), {
    actor: by,
    action: "rollback",
    details: { promotion: promotionId, diff: promotion.diff_id, restored, stagingHead: stagingHead(project) },
  });
  report({ phase: "commit" });
  return { restored, schemaStatements: reverse.before.length + reverse.after.length, diffId: promotion.diff_id, entry };
}

/** What a rollback did. */
export interface RollbackResult {
  readonly promotionId: string;
  /** Rows put back as they were: inserted rows deleted, updated and deleted rows restored. */
  readonly restored: number;
  /** Statements run to reverse the promotion's schema changes (0 when it made none). */
  readonly schemaStatements: number;
}

/** What promotion ids look like: p-, the UTC time to the second, 6 hex digits (src/promote/promote.ts). */
const PROMOTION_ID = /^p-\d{14}-[0-9a-f]{6}$/;

/** Refuses an argument that cannot be a promotion id, before anything connects to production. */
export function checkPromotionId(id: string): void {
  if (!PROMOTION_ID.test(id))
    throw new AirlockError("AIRLOCK_BAD_PROMOTION_ID", `"${id}" is not a promotion id`, {
      hint: "use the id `airlock promote` printed (p-<time>-<6 hex digits>); `airlock audit` lists the promotions",
    });
}

/** Rolls a promotion back; every attempt is recorded. */
export async function rollbackPromotion(
  project: Project,
  promotionId: string,
  options: { to: PgTarget; by?: string; secret?: string; onProgress?: (p: RollbackProgress) => void },
): Promise<RollbackResult> {
  checkPromotionId(promotionId);
  const by = options.by ?? defaultActor();
  const secret = secretFromEnv(options.secret);
  const attempt: Attempt = { project, secret, actor: by, kind: "rollback", details: { promotion: promotionId } };
  let c: pg.Client;
  let key: string;
  try {
    key = requireSecret(secret, "airlock rollback");
    options.onProgress?.({ phase: "connect" });
    c = await openClient(options.to, {
      step: "rollback",
      statementTimeoutMs: project.config.promote.statementTimeout,
      lockTimeoutMs: project.config.promote.lockTimeout,
    });
  } catch (e) {
    recordLocalAttempt(attempt, e);
    throw e;
  }
  try {
    let identity: ProductionIdentity | undefined;
    let done: Awaited<ReturnType<typeof rollbackInTransaction>>;
    try {
      identity = await productionIdentity(c, options.to);
      done = await inTransaction(c, () => rollbackInTransaction(c, project, promotionId, by, key, options.onProgress));
    } catch (e) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw await recordFailedAttempt(c, identity, attempt, e);
    }
    recordOutcome(attempt, "rollback", { diff: done.diffId, restored: done.restored }, { identity, entry: done.entry });
    return { promotionId, restored: done.restored, schemaStatements: done.schemaStatements };
  } finally {
    await c.end().catch(() => undefined);
  }
}
