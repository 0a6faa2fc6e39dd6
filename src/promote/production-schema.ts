/**
 * What Airlock keeps in production, in its own `airlock` schema, written in
 * the same transaction as each promotion or rollback: the promotions, the
 * approvals they used (one promotion per approval, under a primary key, so
 * it holds whichever machine promotes), the pre-image of every row they
 * updated or deleted, the post-image of every row they wrote (to detect
 * later changes before a rollback), and the keyed, hash-chained audit log
 * with its head. A refusal that reached production needs only the audit
 * tables, so those are created on their own.
 */
import type pg from "pg";
import { type AuditEntry, type AuditEvent, type ChainCheck, nextEntry, verifyChain } from "../audit/chain.ts";
import type { ProductionAnchor, ProductionTrail } from "../audit/anchors.ts";
import { MacKey } from "../config/keys.ts";
import { type PgTarget, query } from "../pg/connect.ts";

const AUDIT_DDL = [
  "CREATE SCHEMA IF NOT EXISTS airlock",
  `CREATE TABLE IF NOT EXISTS airlock.audit_log (
     seq bigint PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL,
     details jsonb NOT NULL, prev text NOT NULL, hash text NOT NULL)`,
  "CREATE TABLE IF NOT EXISTS airlock.audit_head (one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL, hash text NOT NULL)",
];

const PROMOTION_DDL = [
  `CREATE TABLE IF NOT EXISTS airlock.promotions (
     id text PRIMARY KEY, diff_id text NOT NULL, approved_by text NOT NULL, promoted_by text NOT NULL,
     promoted_at timestamptz NOT NULL DEFAULT now(), state text NOT NULL CHECK (state IN ('applied', 'rolled_back')),
     rolled_back_at timestamptz, summary jsonb NOT NULL, reverse_schema jsonb NOT NULL, saved jsonb NOT NULL,
     tables jsonb NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS airlock.row_images (
     promotion_id text NOT NULL REFERENCES airlock.promotions, table_schema text NOT NULL, table_name text NOT NULL,
     kind text NOT NULL CHECK (kind IN ('pre', 'post')), op text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
     key jsonb NOT NULL, row jsonb NOT NULL)`,
  "CREATE INDEX IF NOT EXISTS row_images_promotion ON airlock.row_images (promotion_id, kind)",
  // Production's catalog model before and after the promotion (src/promote/reverse.ts); absent in older promotions.
  // json, not jsonb: models are compared property by property as written, and jsonb would reorder their keys.
  "ALTER TABLE airlock.promotions ADD COLUMN IF NOT EXISTS catalog json",
  // An approval authorises one promotion: its id is claimed here inside the promotion's transaction and stays
  // claimed after a rollback. The primary key is what enforces it, even for two promotions from two machines.
  `CREATE TABLE IF NOT EXISTS airlock.used_approvals (
     approval_id text PRIMARY KEY, diff_id text NOT NULL, promotion_id text NOT NULL, used_at timestamptz NOT NULL DEFAULT now())`,
];

/** Creates the airlock schema's audit tables if missing (inside the caller's transaction). */
export async function ensureAuditTables(c: pg.ClientBase): Promise<void> {
  // CREATE SCHEMA IF NOT EXISTS checks CREATE on the database even when the schema exists: only run it when
  // it does not, so the promote role needs that privilege once, not for every promotion (src/promote/privileges.ts).
  const schema = await hasAirlockSchema(c);
  for (const sql of AUDIT_DDL) if (!(schema && sql.startsWith("CREATE SCHEMA"))) await query(c, sql);
}

/** Creates the airlock schema and all its tables if missing (inside the caller's transaction). */
export async function ensureProductionSchema(c: pg.ClientBase): Promise<void> {
  await ensureAuditTables(c);
  for (const sql of PROMOTION_DDL) await query(c, sql);
}

/** True when production has an airlock schema (a refused promotion says whether it created one). */
export async function hasAirlockSchema(c: pg.ClientBase): Promise<boolean> {
  return (await query(c, "SELECT 1 FROM pg_namespace WHERE nspname = 'airlock'")).rowCount === 1;
}

/**
 * Claims an approval for one promotion (inside its transaction). False when it was used already: by a
 * committed promotion, or by one committing meanwhile (the primary key makes this one wait for it).
 */
export async function claimApproval(c: pg.ClientBase, claim: { approvalId: string; diffId: string; promotionId: string }): Promise<boolean> {
  const r = await query(c, "INSERT INTO airlock.used_approvals (approval_id, diff_id, promotion_id) VALUES ($1, $2, $3) ON CONFLICT (approval_id) DO NOTHING", [
    claim.approvalId,
    claim.diffId,
    claim.promotionId,
  ]);
  return r.rowCount === 1;
}

/** True when production has both audit tables. */
export async function hasAuditTables(c: pg.ClientBase): Promise<boolean> {
  return (await query(c, "SELECT 1 FROM pg_tables WHERE schemaname = 'airlock' AND tablename IN ('audit_log', 'audit_head')")).rowCount === 2;
}

/**
 * The promotion that used an approval, if one did, as far as this role can read (claimApproval decides in the end;
 * a role that cannot read the airlock schema is stopped by what it cannot do there).
 */
export async function approvalUsedBy(c: pg.ClientBase, approvalId: string): Promise<string | undefined> {
  const readable = await query(
    c,
    `SELECT 1 FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'airlock' AND t.relname = 'used_approvals' AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(t.oid, 'SELECT')`,
  );
  if (readable.rowCount === 0) return undefined;
  return (await query<{ p: string }>(c, "SELECT promotion_id AS p FROM airlock.used_approvals WHERE approval_id = $1", [approvalId])).rows[0]?.p;
}

/** The key of production's audit log. */
export function productionKey(secret: string): MacKey {
  return new MacKey(secret, "audit-production");
}

/** Which production database this is, as anchors name it. */
export interface ProductionIdentity {
  /** The server's system identifier (or address) and the database's name. */
  readonly database: string;
  /** How to name it to a person: database@host:port, no user or password. */
  readonly display: string;
}

/**
 * Which database this is, for anchors: the server's system identifier (or, where the role may not read it, its
 * address) and the database name — facts of the server, not of the URL used or of anything in the airlock schema.
 */
export async function productionIdentity(c: pg.ClientBase, target: PgTarget): Promise<ProductionIdentity> {
  const r = await query<{ db: string; server: string }>(
    c,
    `SELECT current_database() AS db,
            coalesce(CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') THEN (SELECT system_identifier::text FROM pg_control_system()) END,
                     coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')) AS server`,
  );
  const row = r.rows[0]!;
  return { database: `${row.server}/${row.db}`, display: `${row.db}@${target.host}:${target.port}` };
}

type LogRow = { seq: string; at: string; actor: string; action: string; details: Record<string, unknown>; prev: string; hash: string };

function toEntry(r: LogRow): AuditEntry {
  return { seq: Number(r.seq), at: new Date(r.at).toISOString(), actor: r.actor, action: r.action, details: r.details, prev: r.prev, hash: r.hash };
}

/** Appends a keyed audit entry in production (inside the caller's transaction, so it commits with the change or not at all). */
export async function recordProductionEvent(c: pg.ClientBase, key: MacKey, event: AuditEvent): Promise<AuditEntry> {
  const last = await query<LogRow>(
    c,
    "SELECT seq::text, at::text, actor, action, details, prev, hash FROM airlock.audit_log l ORDER BY l.seq DESC LIMIT 1 FOR UPDATE",
  );
  const entry = nextEntry(last.rows[0] === undefined ? undefined : toEntry(last.rows[0]), event, key);
  await query(c, "INSERT INTO airlock.audit_log (seq, at, actor, action, details, prev, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
    entry.seq,
    entry.at,
    entry.actor,
    entry.action,
    JSON.stringify(entry.details),
    entry.prev,
    entry.hash,
  ]);
  await query(
    c,
    "INSERT INTO airlock.audit_head (one, seq, hash) VALUES (true, $1, $2) ON CONFLICT (one) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash",
    [entry.seq, entry.hash],
  );
  return entry;
}

/** The anchor a staging entry records for a production entry. */
export function anchorFor(identity: ProductionIdentity, entry: AuditEntry): ProductionAnchor {
  return { database: identity.database, display: identity.display, seq: entry.seq, hash: entry.hash };
}

/** Production's audit log as stored. */
export interface ProductionLog {
  /** false when there is no airlock.audit_log table. */
  readonly exists: boolean;
  readonly entries: AuditEntry[];
  readonly head: { seq: number; hash: string } | null;
}

/** Reads production's audit log (empty, and `exists: false`, when there is no airlock.audit_log). */
export async function readProductionLog(c: pg.ClientBase): Promise<ProductionLog> {
  const exists = await query(c, "SELECT 1 FROM pg_tables WHERE schemaname = 'airlock' AND tablename = 'audit_log'");
  if (exists.rowCount === 0) return { exists: false, entries: [], head: null };
  const rows = await query<LogRow>(c, "SELECT seq::text, at::text, actor, action, details, prev, hash FROM airlock.audit_log l ORDER BY l.seq");
  const headTable = await query(c, "SELECT 1 FROM pg_tables WHERE schemaname = 'airlock' AND tablename = 'audit_head'");
  const head = headTable.rowCount === 0 ? { rows: [] } : await query<{ seq: string; hash: string }>(c, "SELECT seq::text, hash FROM airlock.audit_head");
  return {
    exists: true,
    entries: rows.rows.map(toEntry),
    head: head.rows[0] === undefined ? null : { seq: Number(head.rows[0].seq), hash: head.rows[0].hash },
  };
}

/** Production's trail for anchor checks. */
export function productionTrail(identity: ProductionIdentity, log: ProductionLog): ProductionTrail {
  return { ...identity, exists: log.exists, entries: log.entries };
}

/** Checks production's keyed audit chain and its head. */
export function verifyProductionLog(log: Pick<ProductionLog, "entries" | "head">, secret: string): ChainCheck {
  const check = verifyChain(log.entries, productionKey(secret));
  if (!check.ok) return check;
  const last = log.entries[log.entries.length - 1];
  if ((last?.hash ?? null) !== (log.head?.hash ?? null) || (last?.seq ?? null) !== (log.head?.seq ?? null)) {
    return {
      ok: false,
      entries: log.entries.length,
      seq: last?.seq ?? 0,
      problem: "the log does not end where airlock.audit_head says: entries were removed from its end",
    };
  }
  return check;
}
