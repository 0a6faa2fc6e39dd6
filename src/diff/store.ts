/**
 * Diffs on disk: `.airlock/diffs/<id>/` with diff.json (canonical; its
 * sha256 is the id), promote.sql (a readable preview), review.md and
 * review.html. Reading a diff re-checks its id, so a diff changed by one
 * byte is refused by every later step.
 */
import { existsSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { privateDir, writePrivate } from "../config/private-files.ts";
import { join } from "node:path";
import type { Project } from "../config/load.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { diffStatements, inlineStatement } from "../promote/apply.ts";
import { canonicalJson, sha256Hex } from "./canonical.ts";
import { renderReviewHtml } from "./review-html.ts";
import { renderReviewMarkdown } from "./review-md.ts";
import type { Diff } from "./types.ts";

/** Where a project's diffs live. */
export function diffsDir(project: Project): string {
  return project.statePath("diffs");
}

/** promote.sql: the whole promotion as readable SQL (a preview; promotion runs the same statements with parameters). */
export function renderPromoteSql(diff: Diff, id: string): string {
  const lines = [
    `-- Airlock promotion preview for diff ${id}`,
    `-- session ${diff.session}, snapshot ${diff.snapshot}; ${diff.verification.verified ? "verified by replay" : "NOT verified"}`,
    "-- Promotion runs these statements in one transaction, after locking and checking every touched row",
    "-- and saving the pre-images; use `airlock promote --dry-run` to see it against production.",
    "BEGIN;",
    ...diffStatements(diff).map((s) => `${inlineStatement(s)};`),
    "-- then: sequences moved past inserted keys, the audit entry",
    "COMMIT;",
  ];
  return `${lines.join("\n")}\n`;
}

/** Writes a diff's artifacts; returns its id and directory. The same content always gets the same id. */
export function writeDiff(project: Project, diff: Diff): { id: string; dir: string } {
  const json = canonicalJson(diff);
  const id = sha256Hex(json);
  const dir = join(diffsDir(project), id);
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  privateDir(tmp, project.statePath());
  writePrivate(join(tmp, "diff.json"), json);
  writePrivate(join(tmp, "promote.sql"), renderPromoteSql(diff, id));
  writePrivate(join(tmp, "review.md"), renderReviewMarkdown(diff, id));
  writePrivate(join(tmp, "review.html"), renderReviewHtml(diff, id));
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return { id, dir };
}

/** Resolves a full id or a unique prefix (at least 8 characters). */
export function resolveDiffId(project: Project, idOrPrefix: string): string {
  if (!/^[0-9a-f]{8,64}$/.test(idOrPrefix)) {
    throw new AirlockError("AIRLOCK_BAD_DIFF_ID", `"${idOrPrefix}" is not a diff id`, { hint: "use the id `airlock diff` printed (at least its first 8 characters)" });
  }
  const dir = diffsDir(project);
  const matches = existsSync(dir) ? readdirSync(dir).filter((d) => /^[0-9a-f]{64}$/.test(d) && d.startsWith(idOrPrefix)) : [];
  if (matches.length === 0) throw new AirlockError("AIRLOCK_DIFF_NOT_FOUND", `no diff ${idOrPrefix}`, { hint: "run `airlock diff <session>` first" });
  if (matches.length > 1) throw new AirlockError("AIRLOCK_DIFF_AMBIGUOUS", `${idOrPrefix} matches ${matches.length} diffs`, { hint: "give more characters of the id" });
  return matches[0]!;
}

/** Reads a diff and proves its content still matches its id; a tampered diff is refused (exit 2). */
export function readDiff(project: Project, idOrPrefix: string): { id: string; diff: Diff; dir: string } {
  const id = resolveDiffId(project, idOrPrefix);
  const dir = join(diffsDir(project), id);
  const text = readFileSync(join(dir, "diff.json"), "utf8");
  if (sha256Hex(text) !== id) {
    throw new AirlockError("AIRLOCK_DIFF_TAMPERED", `diff ${id.slice(0, 12)}'s content no longer matches its id: diff.json was changed after it was made`, {
      hint: "discard it and run `airlock diff` on the session again",
      exitCode: EXIT_REFUSED,
    });
  }
  let diff: Diff;
  try {
    diff = JSON.parse(text) as Diff;
  } catch (e) {
    throw new AirlockError("AIRLOCK_DIFF_TAMPERED", `diff ${id.slice(0, 12)} is not valid JSON`, { hint: "run `airlock diff` again", exitCode: EXIT_REFUSED, cause: e });
  }
  if (canonicalJson(diff) !== text) {
    throw new AirlockError("AIRLOCK_DIFF_TAMPERED", `diff ${id.slice(0, 12)} is not in canonical form`, { hint: "run `airlock diff` again", exitCode: EXIT_REFUSED });
  }
  return { id, diff, dir };
}
