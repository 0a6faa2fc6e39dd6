/**
 * `airlock approve`: a human binds their name to the exact sha256 of a
 * verified diff, accepting every `danger` hazard by name. Never reads
 * production. The approval is a file beside the diff and an audit entry.
 */
import { existsSync, readFileSync } from "node:fs";
import { writePrivate } from "../config/private-files.ts";
import { join } from "node:path";
import type { Project } from "../config/load.ts";
import { recordEvent } from "../audit/journal.ts";
import { readDiff } from "../diff/store.ts";
import type { Diff } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";

/** An approval as recorded. */
export interface Approval {
  readonly diffId: string;
  readonly approvedBy: string;
  readonly approvedAt: string;
  readonly accepted: readonly string[];
  readonly note: string | null;
}

/** Why a diff may not be approved or promoted; undefined when it may. */
export function refusalFor(diff: Diff, accepted: readonly string[]): AirlockError | undefined {
  if (!diff.verification.verified) {
    return new AirlockError("AIRLOCK_DIFF_UNVERIFIED", "the diff is not verified: its replay did not reproduce the agent's result", {
      hint: "look at the verification section of review.html; fix the session and run `airlock diff` again",
      exitCode: EXIT_REFUSED,
    });
  }
  const missing = [...new Set(diff.hazards.filter((h) => h.severity === "danger" && !accepted.includes(h.code)).map((h) => h.code))];
  if (missing.length > 0) {
    return new AirlockError("AIRLOCK_HAZARD_NOT_ACCEPTED", `danger hazards not accepted: ${missing.join(", ")}`, {
      hint: `read them in review.html, then accept each by name: ${missing.map((m) => `--accept ${m}`).join(" ")}`,
      exitCode: EXIT_REFUSED,
      details: { missing },
    });
  }
  return undefined;
}

function approvalFile(dir: string): string {
  return join(dir, "approval.json");
}

/** Approves a diff; throws (exit 2) for a tampered or unverified diff or an unaccepted danger. */
export function approveDiff(project: Project, idOrPrefix: string, options: { by: string; accept?: readonly string[]; note?: string; now?: Date }): Approval {
  const { id, diff, dir } = readDiff(project, idOrPrefix);
  const accepted = [...new Set(options.accept ?? [])].sort();
  const unknown = accepted.filter((a) => !diff.hazards.some((h) => h.code === a));
  if (unknown.length > 0) {
    throw new AirlockError("AIRLOCK_UNKNOWN_HAZARD", `this diff has no hazard ${unknown.join(", ")}`, { hint: `its hazards: ${[...new Set(diff.hazards.map((h) => h.code))].join(", ") || "none"}`, exitCode: EXIT_REFUSED });
  }
  const refusal = refusalFor(diff, accepted);
  if (refusal !== undefined) {
    recordEvent(project, { actor: options.by, action: "approve-refused", details: { diff: id, session: diff.session, code: refusal.code } });
    throw refusal;
  }
  const approval: Approval = { diffId: id, approvedBy: options.by, approvedAt: (options.now ?? new Date()).toISOString(), accepted, note: options.note ?? null };
  writePrivate(approvalFile(dir), `${JSON.stringify(approval, null, 2)}\n`);
  recordEvent(project, { actor: options.by, action: "approve", details: { diff: id, session: diff.session, snapshot: diff.snapshot, accepted, note: approval.note, summary: diff.summary } });
  return approval;
}

/** The approval of a diff, checked to bind exactly this diff's sha256; refuses (exit 2) otherwise. */
export function requireApproval(dir: string, id: string): Approval {
  const file = approvalFile(dir);
  if (!existsSync(file)) {
    throw new AirlockError("AIRLOCK_NOT_APPROVED", `diff ${id.slice(0, 12)} is not approved`, { hint: `review it, then \`airlock approve ${id.slice(0, 12)} --by <your name>\``, exitCode: EXIT_REFUSED });
  }
  const approval = JSON.parse(readFileSync(file, "utf8")) as Approval;
  if (approval.diffId !== id) {
    throw new AirlockError("AIRLOCK_APPROVAL_MISMATCH", `the approval beside diff ${id.slice(0, 12)} is for another diff (${String(approval.diffId).slice(0, 12)})`, {
      hint: "approve this exact diff again",
      exitCode: EXIT_REFUSED,
    });
  }
  return approval;
}
