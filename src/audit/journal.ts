/**
 * The staging-side audit trail: `.airlock/audit.jsonl`, one keyed,
 * hash-chained entry per line for snapshot, up, run, diff, approve, down,
 * and every promotion or rollback attempt, with `.airlock/audit.head`
 * beside it. Entries are keyed with AIRLOCK_SECRET (see chain.ts); whoever
 * can write `.airlock/` can still delete the files, which only production's
 * anchors (anchors.ts) can reveal.
 *
 * An event recorded without AIRLOCK_SECRET, or under a secret the trail is
 * not keyed with (its last entry's MAC does not hold under it), cannot be
 * authenticated: it goes to `.airlock/audit.unauthenticated.jsonl` instead,
 * which `airlock audit` lists apart and never counts as verified. Chaining
 * it would leave the trail unverifiable for good after one run with a
 * missing or mistyped secret.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { z } from "zod";
import type { Project } from "../config/load.ts";
import { MacKey, requireSecret, secretFromEnv } from "../config/keys.ts";
import { appendPrivate, privateDir, writePrivate } from "../config/private-files.ts";
import { checkState } from "../config/state-file.ts";
import { AirlockError } from "../errors.ts";
import { type AuditEntry, type AuditEvent, type ChainCheck, GENESIS, auditEntrySchema, auditEventShape, entryHolds, nextEntry, verifyChain } from "./chain.ts";

/** The journal file of a project. */
export function journalFile(project: Project): string {
  return project.statePath("audit.jsonl");
}

/** The key of the staging trail. */
export function stagingKey(secret: string): MacKey {
  return new MacKey(secret, "audit-staging");
}

/**
 * The staging trail's name in production's anchors: this machine and state directory. It survives the deletion
 * of the trail's files, so production can tell that the trail it anchored is gone; entries from another
 * machine's trail are told apart by it.
 */
export function stagingTrailId(project: Project): string {
  return `${hostname()}:${project.statePath()}`;
}

/**
 * The lines of a JSONL audit file, each parsed and checked against `schema`: a line that is not JSON, or not of
 * the schema's shape (edited: a seq that is text would be chained onto as text), is AIRLOCK_AUDIT_CORRUPT naming the
 * line and the field. What an entry says is its MAC's to vouch for (verifyJournal), not the schema's.
 */
function readAuditLines<S extends z.ZodType>(file: string, schema: S, hint: string): Array<z.output<S>> {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l, i) => {
      let value: unknown;
      try {
        value = JSON.parse(l);
      } catch (e) {
        throw new AirlockError("AIRLOCK_AUDIT_CORRUPT", `line ${i + 1} of ${file} is not valid JSON`, { hint, cause: e });
      }
      return checkState(file, value, schema, { code: "AIRLOCK_AUDIT_CORRUPT", where: `line ${i + 1}`, hint });
    });
}

/** Every entry in the journal, in order. */
export function readJournal(project: Project): AuditEntry[] {
  return readAuditLines(journalFile(project), auditEntrySchema, "the audit trail was edited; restore it from a backup");
}

// The last hash, kept beside the journal: a chain alone cannot show that its last entries were cut off.
function headFile(project: Project): string {
  return project.statePath("audit.head");
}

function lockFile(project: Project): string {
  return project.statePath("audit.lock");
}

const LOCK_WAIT_MS = 10_000;
// A holder appends one line and rewrites the head: a lock older than this belongs to a process that died.
const LOCK_STALE_MS = 30_000;

/** Runs `fn` holding the journal's lock, so two commands at once (two promotions racing) never write the same sequence number. */
function withJournalLock<T>(project: Project, fn: () => T): T {
  const file = lockFile(project);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      closeSync(openSync(file, "wx", 0o600));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      try {
        if (Date.now() - statSync(file).mtimeMs > LOCK_STALE_MS) rmSync(file, { force: true });
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline)
        throw new AirlockError("AIRLOCK_AUDIT_BUSY", `the audit journal is locked by another Airlock command (${file})`, {
          hint: "wait for it to finish; if none is running, remove the lock file",
        });
      Atomics.wait(pause, 0, 0, 20);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(file, { force: true });
  }
}

/** An event that could not be authenticated, as kept apart from the trail. */
export interface UnauthenticatedEvent extends AuditEvent {
  readonly at: string;
  /** Why it is not in the trail. */
  readonly reason: string;
}

const unauthenticatedEventSchema: z.ZodType<UnauthenticatedEvent> = z.object({ at: z.string(), ...auditEventShape, reason: z.string() });

function unauthenticatedFile(project: Project): string {
  return project.statePath("audit.unauthenticated.jsonl");
}

/** Events recorded without AIRLOCK_SECRET or under another one (see the header), in order. */
export function readUnauthenticated(project: Project): UnauthenticatedEvent[] {
  return readAuditLines(
    unauthenticatedFile(project),
    unauthenticatedEventSchema,
    "restore the file from a backup, or remove that line (the file holds only events that were never authenticated)",
  );
}

/**
 * Appends an event to the journal, chained to the last entry and keyed with AIRLOCK_SECRET (given, else from the
 * environment). Without a secret, or under one the trail is not keyed with, the event is kept apart, unauthenticated,
 * and undefined is returned.
 */
export function recordEvent(project: Project, event: AuditEvent, secret?: string): AuditEntry | undefined {
  const s = secretFromEnv(secret);
  privateDir(dirname(journalFile(project)), project.statePath());
  return withJournalLock(project, () => {
    const entries = readJournal(project);
    const last = entries[entries.length - 1];
    const key = s === undefined ? undefined : stagingKey(s);
    const reason =
      key === undefined
        ? "recorded without AIRLOCK_SECRET"
        : last !== undefined && !entryHolds(last, key)
          ? "the trail's last entry does not verify under the AIRLOCK_SECRET in use (another secret, or the trail was altered)"
          : undefined;
    if (key === undefined || reason !== undefined) {
      appendPrivate(unauthenticatedFile(project), `${JSON.stringify({ at: new Date().toISOString(), ...event, reason })}\n`);
      return undefined;
    }
    const entry = nextEntry(last, event, key);
    appendPrivate(journalFile(project), `${JSON.stringify(entry)}\n`);
    writePrivate(headFile(project), `${entry.seq} ${entry.hash}\n`);
    return entry;
  });
}

/** Where the staging trail ends now: what a production entry records as its anchor (seq 0 for an empty trail). */
export function stagingHead(project: Project): { trail: string; seq: number; hash: string } {
  const entries = readJournal(project);
  const last = entries[entries.length - 1];
  return { trail: stagingTrailId(project), seq: last?.seq ?? 0, hash: last?.hash ?? GENESIS };
}

/** Checks the journal's keyed chain (AIRLOCK_SECRET given, else from the environment), and that it ends where the head says. */
export function verifyJournal(project: Project, secret?: string): ChainCheck {
  const entries = readJournal(project);
  const check = verifyChain(entries, stagingKey(requireSecret(secretFromEnv(secret), "verifying the audit trail")));
  if (!check.ok) return check;
  const head = existsSync(headFile(project)) ? readFileSync(headFile(project), "utf8").trim() : "";
  const last = entries[entries.length - 1];
  const expected = last === undefined ? "" : `${last.seq} ${last.hash}`;
  if (head !== expected)
    return {
      ok: false,
      entries: entries.length,
      seq: last?.seq ?? 0,
      problem: "the journal does not end where its head says: entries were removed from its end",
    };
  return check;
}
