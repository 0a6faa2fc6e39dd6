/**
 * The staging-side audit trail: `.airlock/audit.jsonl`, one hash-chained
 * entry per line for snapshot, up, run, diff, approve and down.
 */
import { existsSync, readFileSync } from "node:fs";
import { appendPrivate, privateDir, writePrivate } from "../config/private-files.ts";
import { dirname } from "node:path";
import type { Project } from "../config/load.ts";
import { AirlockError } from "../errors.ts";
import { type AuditEntry, type AuditEvent, type ChainCheck, nextEntry, verifyChain } from "./chain.ts";

/** The journal file of a project. */
export function journalFile(project: Project): string {
  return project.statePath("audit.jsonl");
}

/** Every entry in the journal, in order. */
export function readJournal(project: Project): AuditEntry[] {
  const file = journalFile(project);
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l, i) => {
      try {
        return JSON.parse(l) as AuditEntry;
      } catch (e) {
        throw new AirlockError("AIRLOCK_AUDIT_CORRUPT", `line ${i + 1} of ${file} is not valid JSON`, { hint: "the audit trail was edited; restore it from a backup", cause: e });
      }
    });
}

// The last hash, kept beside the journal: a chain alone cannot show that its last entries were cut off.
function headFile(project: Project): string {
  return project.statePath("audit.head");
}

/** Appends an event to the journal (chained to the last entry). */
export function recordEvent(project: Project, event: AuditEvent): AuditEntry {
  const entries = readJournal(project);
  const entry = nextEntry(entries[entries.length - 1], event);
  privateDir(dirname(journalFile(project)), project.statePath());
  appendPrivate(journalFile(project), `${JSON.stringify(entry)}\n`);
  writePrivate(headFile(project), `${entry.seq} ${entry.hash}\n`);
  return entry;
}

/** Checks the journal's chain, and that it ends where the head says. */
export function verifyJournal(project: Project): ChainCheck {
  const entries = readJournal(project);
  const check = verifyChain(entries);
  if (!check.ok) return check;
  const head = existsSync(headFile(project)) ? readFileSync(headFile(project), "utf8").trim() : "";
  const last = entries[entries.length - 1];
  const expected = last === undefined ? "" : `${last.seq} ${last.hash}`;
  if (head !== expected) return { ok: false, entries: entries.length, seq: last?.seq ?? 0, problem: "the journal does not end where its head says: entries were removed from its end" };
  return check;
}
