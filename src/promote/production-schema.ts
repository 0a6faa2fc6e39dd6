/**
 * What Airlock keeps in production, in its own `airlock` schema, written in
 * the same transaction as each promotion or rollback: the promotions, the
 * pre-image of every row they updated or deleted, the post-image of every
 * row they wrote (to detect later changes before a rollback), and the
 * hash-chained audit log with its head.
 */
import type pg from "pg";
import { type AuditEntry, type AuditEvent, type ChainCheck, nextEntry, verifyChain } from "../audit/chain.ts";
import { query } from "../pg/connect.ts";

const DDL = [
  "CREATE SCHEMA IF NOT EXISTS airlock",
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
  `CREATE TABLE IF NOT EXISTS airlock.audit_log (
     seq bigint PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL,
     details jsonb NOT NULL, prev text NOT NULL, hash text NOT NULL)`,
  "CREATE TABLE IF NOT EXISTS airlock.audit_head (one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL, hash text NOT NULL)",
];

/** Creates the airlock schema and its tables if missing (inside the caller's transaction). */
export async function ensureProductionSchema(c: pg.ClientBase): Promise<void> {
  for (const sql of DDL) await query(c, sql);
}

function toEntry(r: { seq: string; at: string; actor: string; action: string; details: Record<string, unknown>; prev: string; hash: string }): AuditEntry {
  return { seq: Number(r.seq), at: new Date(r.at).toISOString(), actor: r.actor, action: r.action, details: r.details, prev: r.prev, hash: r.hash };
}

/** Appends an audit entry in production (inside the caller's transaction, so it commits with the change or not at all). */
export async function recordProductionEvent(c: pg.ClientBase, event: AuditEvent): Promise<AuditEntry> {
  const last = await query<{ seq: string; at: string; actor: string; action: string; details: Record<string, unknown>; prev: string; hash: string }>(
    c,
    "SELECT seq::text, at::text, actor, action, details, prev, hash FROM airlock.audit_log l ORDER BY l.seq DESC LIMIT 1 FOR UPDATE",
  );
  const entry = nextEntry(last.rows[0] === undefined ? undefined : toEntry(last.rows[0]), event);
  await query(c, "INSERT INTO airlock.audit_log (seq, at, actor, action, details, prev, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
    entry.seq,
    entry.at,
    entry.actor,
    entry.action,
    JSON.stringify(entry.details),
    entry.prev,
    entry.hash,
  ]);
  await query(c, "INSERT INTO airlock.audit_head (one, seq, hash) VALUES (true, $1, $2) ON CONFLICT (one) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash", [entry.seq, entry.hash]);
  return entry;
}

/** Reads production's audit log (empty when Airlock never promoted there). */
export async function readProductionLog(c: pg.ClientBase): Promise<{ entries: AuditEntry[]; head: { seq: number; hash: string } | null }> {
  const exists = await query(c, "SELECT 1 FROM pg_tables WHERE schemaname = 'airlock' AND tablename = 'audit_log'");
  if (exists.rowCount === 0) return { entries: [], head: null };
  const rows = await query<{ seq: string; at: string; actor: string; action: string; details: Record<string, unknown>; prev: string; hash: string }>(
    c,
    "SELECT seq::text, at::text, actor, action, details, prev, hash FROM airlock.audit_log l ORDER BY l.seq",
  );
  const head = await query<{ seq: string; hash: string }>(c, "SELECT seq::text, hash FROM airlock.audit_head");
  return { entries: rows.rows.map(toEntry), head: head.rows[0] === undefined ? null : { seq: Number(head.rows[0].seq), hash: head.rows[0].hash } };
}

/** Checks production's audit chain and its head. */
export function verifyProductionLog(log: { entries: AuditEntry[]; head: { seq: number; hash: string } | null }): ChainCheck {
  const check = verifyChain(log.entries);
  if (!check.ok) return check;
  const last = log.entries[log.entries.length - 1];
  if ((last?.hash ?? null) !== (log.head?.hash ?? null) || (last?.seq ?? null) !== (log.head?.seq ?? null)) {
    return { ok: false, entries: log.entries.length, seq: last?.seq ?? 0, problem: "the log does not end where airlock.audit_head says: entries were removed from its end" };
  }
  return check;
}
