/**
 * `airlock approve`: a human binds their name to the exact sha256 of a
 * verified diff, accepting every `danger` hazard by name. Never reads
 * production. The approval is a file beside the diff and an audit entry.
 *
 * An approval is only worth something if nobody else can write one: it
 * carries a MAC, under a key derived from AIRLOCK_SECRET, over its own id (a
 * random nonce), the diff's id, the approver, the time, the accepted hazards
 * and the note. Promotion refuses an approval whose MAC does not hold, one
 * for another diff, and one already used (the nonce is claimed in
 * production, see production-schema.ts).
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { recordEvent } from "../audit/journal.ts";
import { MacKey, requireSecret, secretFromEnv } from "../config/keys.ts";
import type { Project } from "../config/load.ts";
import { writePrivate } from "../config/private-files.ts";
import { checkState, displayPath, stateProblem } from "../config/state-file.ts";
import { canonicalJson } from "../format/canonical.ts";
import { checkDiffMac, readDiff } from "../diff/store.ts";
import type { Diff } from "../diff/types.ts";
import { readManifest, requireSnapshotSecret, snapshotsDir } from "../snapshot/store.ts";
import { AirlockError, EXIT_REFUSED, isAirlockError, type ErrorCode } from "../errors.ts";

/** An approval as recorded. */
export interface Approval {
  /** A random nonce: what production records as used, so one approval authorises one promotion. */
  readonly id: string;
  readonly diffId: string;
  readonly approvedBy: string;
  readonly approvedAt: string;
  readonly accepted: readonly string[];
  readonly note: string | null;
  /** HMAC of everything above under the approval key. */
  readonly mac: string;
}

/** What an approval whose MAC holds is checked against (see requireApproval). */
export const approvalSchema: z.ZodType<Approval> = z.object({
  id: z.string(),
  diffId: z.string(),
  approvedBy: z.string(),
  approvedAt: z.string(),
  accepted: z.array(z.string()),
  note: z.string().nullable(),
  mac: z.string(),
});

/** The key that authenticates approvals. */
export function approvalKey(secret: string): MacKey {
  return new MacKey(secret, "approval");
}

function approvalContent(a: Omit<Approval, "mac">): string {
  return canonicalJson({ id: a.id, diffId: a.diffId, approvedBy: a.approvedBy, approvedAt: a.approvedAt, accepted: a.accepted, note: a.note });
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

/**
 * A diff's MAC, checked after the secret itself (when its snapshot is still there), so that a rotated secret is
 * named as such rather than as a forged diff.
 */
export function checkSecretAndMac(project: Project, read: { id: string; diff: Diff; dir: string }, secret: string, step: string): void {
  const snapshots = snapshotsDir(project.statePath());
  if (existsSync(join(snapshots, read.diff.snapshot, "manifest.json"))) requireSnapshotSecret(readManifest(snapshots, read.diff.snapshot), secret, step);
  checkDiffMac(read, secret);
}

function approvalFile(dir: string): string {
  return join(dir, "approval.json");
}

/** Options of an approval. */
export interface ApproveOptions {
  readonly by: string;
  readonly accept?: readonly string[];
  readonly note?: string;
  readonly now?: Date;
  /** AIRLOCK_SECRET (default: the environment). */
  readonly secret?: string;
}

/** Approves a diff; throws (exit 2) for a diff whose MAC does not hold, an unverified diff or an unaccepted danger. */
export function approveDiff(project: Project, idOrPrefix: string, options: ApproveOptions): Approval {
  const secret = secretFromEnv(options.secret);
  const refuse = (e: unknown): never => {
    if (isAirlockError(e) && e.exitCode === EXIT_REFUSED) {
      recordEvent(project, { actor: options.by, action: "approve-refused", details: { diff: idOrPrefix, code: e.code } }, secret);
    }
    throw e;
  };
  let read: ReturnType<typeof readDiff>;
  try {
    read = readDiff(project, idOrPrefix);
    checkSecretAndMac(project, read, requireSecret(secret, "airlock approve"), "airlock approve");
  } catch (e) {
    return refuse(e);
  }
  const { id, diff, dir } = read;
  const accepted = [...new Set(options.accept ?? [])].sort();
  const unknown = accepted.filter((a) => !diff.hazards.some((h) => h.code === a));
  if (unknown.length > 0) {
    return refuse(
      new AirlockError("AIRLOCK_UNKNOWN_HAZARD", `this diff has no hazard ${unknown.join(", ")}`, {
        hint: `its hazards: ${[...new Set(diff.hazards.map((h) => h.code))].join(", ") || "none"}`,
        exitCode: EXIT_REFUSED,
      }),
    );
  }
  const refusal = refusalFor(diff, accepted);
  if (refusal !== undefined) return refuse(refusal);
  const content = {
    id: `appr-${randomBytes(12).toString("hex")}`,
    diffId: id,
    approvedBy: options.by,
    approvedAt: (options.now ?? new Date()).toISOString(),
    accepted,
    note: options.note ?? null,
  };
  const approval: Approval = { ...content, mac: approvalKey(secret!).mac(approvalContent(content)) };
  writePrivate(approvalFile(dir), `${JSON.stringify(approval, null, 2)}\n`);
  recordEvent(
    project,
    {
      actor: options.by,
      action: "approve",
      details: { diff: id, approval: approval.id, session: diff.session, snapshot: diff.snapshot, accepted, note: approval.note, summary: diff.summary },
    },
    secret,
  );
  return approval;
}

function approvalRefusal(code: ErrorCode, message: string, hint: string): AirlockError {
  return new AirlockError(code, message, { hint, exitCode: EXIT_REFUSED });
}

/**
 * The approval beside a diff, checked: its MAC holds under AIRLOCK_SECRET and it binds exactly this diff's sha256.
 * Refuses (exit 2) otherwise, naming what failed. Whether it was used already is production's to say.
 *
 * The MAC is checked before the schema: whether the file is authentic must not depend on its shape, so anything
 * not written by `airlock approve` under this secret is refused as such (exit 2, in the trail as a refused
 * attempt), however it is malformed; the schema's finding, if any, is added to the message. The MAC is over the
 * canonical JSON of the fields, which any JSON value has. Only an approval whose MAC holds but whose shape this
 * version does not read (written by another version) is AIRLOCK_STATE_INVALID.
 */
export function requireApproval(dir: string, id: string, secret: string): Approval {
  const short = id.slice(0, 12);
  const file = approvalFile(dir);
  if (!existsSync(file)) {
    throw approvalRefusal("AIRLOCK_NOT_APPROVED", `diff ${short} is not approved`, `review it, then \`airlock approve ${short} --by <your name>\``);
  }
  const again = `approve this exact diff again: \`airlock approve ${short} --by <your name>\``;
  let approval: Approval;
  try {
    approval = JSON.parse(readFileSync(file, "utf8")) as Approval;
  } catch (e) {
    throw new AirlockError("AIRLOCK_APPROVAL_NOT_AUTHENTIC", `the approval of diff ${short} (${displayPath(file)}) is not valid JSON`, {
      hint: again,
      exitCode: EXIT_REFUSED,
      cause: e,
    });
  }
  if (typeof approval !== "object" || approval === null || typeof approval.mac !== "string") {
    throw approvalRefusal(
      "AIRLOCK_APPROVAL_NOT_AUTHENTIC",
      `the approval beside diff ${short} has no MAC: it was not written by \`airlock approve\` (or was written before approvals were authenticated)`,
      again,
    );
  }
  if (!approvalKey(secret).holds(approvalContent(approval), approval.mac)) {
    const problem = stateProblem(approvalSchema, approval);
    throw approvalRefusal(
      "AIRLOCK_APPROVAL_NOT_AUTHENTIC",
      `the approval beside diff ${short} does not carry a valid MAC: its id, diff, approver, time, accepted hazards or note is not what \`airlock approve\` wrote under this AIRLOCK_SECRET (forged, or edited)${problem === undefined ? "" : `; ${displayPath(file)}: ${problem}`}`,
      again,
    );
  }
  checkState(file, approval, approvalSchema, { hint: again });
  if (approval.diffId !== id) {
    throw approvalRefusal(
      "AIRLOCK_APPROVAL_MISMATCH",
      `the approval beside diff ${short} is for another diff (${String(approval.diffId).slice(0, 12)})`,
      "approve this exact diff again",
    );
  }
  return approval;
}
