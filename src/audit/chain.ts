/**
 * The audit trail's hash chain: each entry's hash covers its content and the
 * previous entry's hash, so editing, deleting or reordering any entry breaks
 * every hash after it. Used for `.airlock/audit.jsonl` (staging) and
 * `airlock.audit_log` (production) alike.
 */
import { userInfo } from "node:os";
import { canonicalJson, sha256Hex } from "../diff/canonical.ts";

/** What an entry records. */
export interface AuditEvent {
  /** Who: from --by, else the OS user. */
  readonly actor: string;
  /** What: snapshot, up, run, diff, approve, down, promote, rollback, refused… */
  readonly action: string;
  /** Ids linking session → diff → approval → promotion, counts, hazards accepted. Never a secret or a production value. */
  readonly details: Readonly<Record<string, unknown>>;
}

/** An entry as stored. */
export interface AuditEntry extends AuditEvent {
  readonly seq: number;
  readonly at: string;
  readonly prev: string;
  readonly hash: string;
}

/** The hash before the first entry. */
export const GENESIS = "0".repeat(64);

/** The hash of an entry's content and the previous hash. */
export function entryHash(e: Omit<AuditEntry, "hash">): string {
  return sha256Hex(canonicalJson({ seq: e.seq, at: e.at, actor: e.actor, action: e.action, details: e.details, prev: e.prev }));
}

/** The next entry after `last` (or the first). */
export function nextEntry(last: AuditEntry | undefined, event: AuditEvent, at = new Date()): AuditEntry {
  const partial = { seq: (last?.seq ?? 0) + 1, at: at.toISOString(), actor: event.actor, action: event.action, details: event.details, prev: last?.hash ?? GENESIS };
  return { ...partial, hash: entryHash(partial) };
}

/** Where the chain breaks, if it does. */
export type ChainCheck = { readonly ok: true; readonly entries: number } | { readonly ok: false; readonly entries: number; readonly seq: number; readonly problem: string };

/** Checks a whole chain in order. */
export function verifyChain(entries: readonly AuditEntry[]): ChainCheck {
  let prev = GENESIS;
  for (const [i, e] of entries.entries()) {
    if (e.seq !== i + 1) return { ok: false, entries: entries.length, seq: e.seq, problem: `entry ${i + 1} has sequence number ${e.seq}: an entry was deleted or reordered` };
    if (e.prev !== prev) return { ok: false, entries: entries.length, seq: e.seq, problem: `entry ${e.seq} does not follow the entry before it` };
    if (entryHash(e) !== e.hash) return { ok: false, entries: entries.length, seq: e.seq, problem: `entry ${e.seq} was changed after it was written` };
    prev = e.hash;
  }
  return { ok: true, entries: entries.length };
}

/** The default actor: the OS user. */
export function defaultActor(): string {
  try {
    return userInfo().username;
  } catch {
    return "unknown";
  }
}
