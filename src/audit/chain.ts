/**
 * The audit trail's keyed hash chain: each entry's hash is an HMAC, under a
 * key derived from AIRLOCK_SECRET, of its content and the previous entry's
 * hash. Editing, deleting or reordering any entry breaks every hash after
 * it, and — unlike a plain sha256 chain — nobody without the secret can
 * recompute the chain after doing so. Used for `.airlock/audit.jsonl`
 * (staging) and `airlock.audit_log` (production), each with its own key.
 * Entries from before trails were keyed (plain sha256) do not verify;
 * Airlock is pre-1.0 and keeps no compatibility path for them.
 */
import { userInfo } from "node:os";
import { z } from "zod";
import type { MacKey } from "../config/keys.ts";
import { canonicalJson } from "../format/canonical.ts";

/** What an entry records. */
export interface AuditEvent {
  /** Who: from --by, else the OS user. */
  readonly actor: string;
  /** What: snapshot, up, run, diff, approve, down, promote, rollback, refused… */
  readonly action: string;
  /** Ids linking session → diff → approval → promotion, counts, hazards accepted, anchors. Never a secret or a production value. */
  readonly details: Readonly<Record<string, unknown>>;
}

/** An entry as stored. */
export interface AuditEntry extends AuditEvent {
  readonly seq: number;
  readonly at: string;
  readonly prev: string;
  /** HMAC of the rest under the trail's key. */
  readonly hash: string;
}

/** The fields every recorded event has (an entry of the journal, an unauthenticated event). */
export const auditEventShape = { actor: z.string(), action: z.string(), details: z.record(z.string(), z.unknown()) };

/** What each line of the staging journal is checked against when read (its MAC is the chain's to check). */
export const auditEntrySchema: z.ZodType<AuditEntry> = z.object({ seq: z.int(), at: z.string(), ...auditEventShape, prev: z.string(), hash: z.string() });

/** The hash before the first entry. */
export const GENESIS = "0".repeat(64);

function entryContent(e: Omit<AuditEntry, "hash">): string {
  return canonicalJson({ seq: e.seq, at: e.at, actor: e.actor, action: e.action, details: e.details, prev: e.prev });
}

/** The hash of an entry: the MAC of its content and the previous hash under `key`. */
export function entryHash(e: Omit<AuditEntry, "hash">, key: MacKey): string {
  return key.mac(entryContent(e));
}

/** True when an entry's hash is its MAC under `key`. */
export function entryHolds(e: AuditEntry, key: MacKey): boolean {
  return key.holds(entryContent(e), e.hash);
}

/** The next entry after `last` (or the first). */
export function nextEntry(last: AuditEntry | undefined, event: AuditEvent, key: MacKey, at = new Date()): AuditEntry {
  const partial = {
    seq: (last?.seq ?? 0) + 1,
    at: at.toISOString(),
    actor: event.actor,
    action: event.action,
    details: event.details,
    prev: last?.hash ?? GENESIS,
  };
  return { ...partial, hash: entryHash(partial, key) };
}

/** Where the chain breaks, if it does. */
export type ChainCheck =
  { readonly ok: true; readonly entries: number } | { readonly ok: false; readonly entries: number; readonly seq: number; readonly problem: string };

/** Checks a whole chain in order under `key`. */
export function verifyChain(entries: readonly AuditEntry[], key: MacKey): ChainCheck {
  let prev = GENESIS;
  for (const [i, e] of entries.entries()) {
    if (e.seq !== i + 1)
      return { ok: false, entries: entries.length, seq: e.seq, problem: `entry ${i + 1} has sequence number ${e.seq}: an entry was deleted or reordered` };
    if (e.prev !== prev) return { ok: false, entries: entries.length, seq: e.seq, problem: `entry ${e.seq} does not follow the entry before it` };
    if (!entryHolds(e, key)) {
      return {
        ok: false,
        entries: entries.length,
        seq: e.seq,
        problem: `entry ${e.seq} (${e.action}) does not carry a valid MAC: it was changed, or written without the key (under another AIRLOCK_SECRET, or before audit trails were keyed)`,
      };
    }
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
