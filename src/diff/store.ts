/**
 * Diffs on disk: `.airlock/diffs/<id>/` with diff.json (canonical; its
 * sha256 is the id), diff.mac, promote.sql (a readable preview), review.md
 * and review.html. Reading a diff re-checks its id, so a diff changed by one
 * byte is refused by every later step. The id alone proves nothing about
 * who made the diff (anyone can hash a hand-written one), so `airlock diff`
 * also writes diff.mac: an HMAC of the canonical content — verification
 * result included — under a key derived from AIRLOCK_SECRET. Approve and
 * promote read diffs through readAuthenticDiff, which refuses one whose MAC
 * does not hold. When the diff was made is not part of its content (the same
 * session diffed twice is the same diff, with one id): it is kept beside it
 * in created.json, with a MAC of its own; diffing the same content again
 * keeps the directory as it is, first creation time and approval included.
 */
import { existsSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import { privateDir, writePrivate } from "../config/private-files.ts";
import { join } from "node:path";
import { z } from "zod";
import type { Project } from "../config/load.ts";
import { MacKey } from "../config/keys.ts";
import { checkState, displayPath, stateProblem } from "../config/state-file.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { diffStatements, inlineStatement } from "../apply/statements.ts";
import { canonicalJson, sha256Hex } from "../format/canonical.ts";
import { renderReviewHtml } from "./review-html.ts";
import { renderReviewMarkdown } from "./review-md.ts";
import { type Diff, diffFileSchema } from "./types.ts";

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

/** The key that authenticates diffs (their content and verification result). */
export function diffKey(secret: string): MacKey {
  return new MacKey(secret, "diff");
}

/** What a diff's id and MAC cover: all of it but when it was made. */
export function diffContent(diff: Diff): Omit<Diff, "createdAt"> {
  const { createdAt: _when, ...content } = diff;
  return content;
}

/** When a diff was made, as stored beside it (created.json), with a MAC binding it to the diff's id. */
interface Created {
  readonly createdAt: string;
  readonly mac: string;
}

/** What the creation time's MAC covers; never canonical JSON, so it can never pass for a diff's MAC. */
function createdMessage(id: string, createdAt: string): string {
  return `airlock diff created\n${id}\n${createdAt}`;
}

const createdSchema: z.ZodType<Created> = z.object({ createdAt: z.string(), mac: z.string() });

/** created.json, or why it cannot be read (missing, not JSON, a field missing or of the wrong type). */
function readCreated(dir: string): Created | { readonly problem: string } {
  const file = join(dir, "created.json");
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    return { problem: `${displayPath(file)} ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "is missing" : "is not valid JSON"}` };
  }
  const problem = stateProblem(createdSchema, value);
  return problem === undefined ? (value as Created) : { problem: `${displayPath(file)}: ${problem}` };
}

/** The creation time of a diff already stored with this exact content and valid MACs under this secret, if there is one. */
function storedCreatedAt(dir: string, id: string, json: string, secret: string): string | undefined {
  try {
    if (readFileSync(join(dir, "diff.json"), "utf8") !== json) return undefined;
    if (!diffKey(secret).holds(json, readFileSync(join(dir, "diff.mac"), "utf8").trim())) return undefined;
  } catch {
    return undefined;
  }
  const created = readCreated(dir);
  return !("problem" in created) && diffKey(secret).holds(createdMessage(id, created.createdAt), created.mac) ? created.createdAt : undefined;
}

/**
 * Writes a diff's artifacts and its MAC; returns its id, directory and creation time. The same content always gets
 * the same id, and a diff already stored with it is kept as it is (when it was first made, its approval).
 */
export function writeDiff(project: Project, diff: Diff, secret: string): { id: string; dir: string; createdAt: string } {
  const json = canonicalJson(diffContent(diff));
  const id = sha256Hex(json);
  const dir = join(diffsDir(project), id);
  const kept = storedCreatedAt(dir, id, json, secret);
  if (kept !== undefined) return { id, dir, createdAt: kept };
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  privateDir(tmp, project.statePath());
  writePrivate(join(tmp, "diff.json"), json);
  writePrivate(join(tmp, "diff.mac"), `${diffKey(secret).mac(json)}\n`);
  writePrivate(
    join(tmp, "created.json"),
    `${JSON.stringify({ createdAt: diff.createdAt, mac: diffKey(secret).mac(createdMessage(id, diff.createdAt)) } satisfies Created)}\n`,
  );
  writePrivate(join(tmp, "promote.sql"), renderPromoteSql(diff, id));
  writePrivate(join(tmp, "review.md"), renderReviewMarkdown(diff, id));
  writePrivate(join(tmp, "review.html"), renderReviewHtml(diff, id));
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return { id, dir, createdAt: diff.createdAt };
}

/** Resolves a full id or a unique prefix (at least 8 characters). */
export function resolveDiffId(project: Project, idOrPrefix: string): string {
  if (!/^[0-9a-f]{8,64}$/.test(idOrPrefix)) {
    throw new AirlockError("AIRLOCK_BAD_DIFF_ID", `"${idOrPrefix}" is not a diff id`, {
      hint: "use the id `airlock diff` printed (at least its first 8 characters)",
    });
  }
  const dir = diffsDir(project);
  const matches = existsSync(dir) ? readdirSync(dir).filter((d) => /^[0-9a-f]{64}$/.test(d) && d.startsWith(idOrPrefix)) : [];
  if (matches.length === 0) throw new AirlockError("AIRLOCK_DIFF_NOT_FOUND", `no diff ${idOrPrefix}`, { hint: "run `airlock diff <session>` first" });
  if (matches.length > 1)
    throw new AirlockError("AIRLOCK_DIFF_AMBIGUOUS", `${idOrPrefix} matches ${matches.length} diffs`, { hint: "give more characters of the id" });
  return matches[0]!;
}

/** Reads a diff and proves its content still matches its id; a tampered diff is refused (exit 2). Its shape is checked after its MAC, by checkDiffMac. */
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
    throw new AirlockError("AIRLOCK_DIFF_TAMPERED", `diff ${id.slice(0, 12)} is not valid JSON (${displayPath(join(dir, "diff.json"))})`, {
      hint: "run `airlock diff` again",
      exitCode: EXIT_REFUSED,
      cause: e,
    });
  }
  if (canonicalJson(diff) !== text) {
    throw new AirlockError("AIRLOCK_DIFF_TAMPERED", `diff ${id.slice(0, 12)} is not in canonical form`, {
      hint: "run `airlock diff` again",
      exitCode: EXIT_REFUSED,
    });
  }
  // Its creation time is beside it (checked with its MAC by checkDiffMac); a diff.json that holds one is judged by its MAC alone.
  if (typeof diff.createdAt === "string") return { id, diff, dir };
  const created = readCreated(dir);
  if ("problem" in created) {
    throw new AirlockError("AIRLOCK_DIFF_TAMPERED", `diff ${id.slice(0, 12)} has no readable created.json (when it was made): ${created.problem}`, {
      hint: "discard it and run `airlock diff` on the session again",
      exitCode: EXIT_REFUSED,
    });
  }
  return { id, diff: { ...diff, createdAt: created.createdAt }, dir };
}

/**
 * Checks the MAC of a diff read with readDiff: a diff Airlock did not make with this AIRLOCK_SECRET (forged, or its
 * verification result edited) is refused (exit 2), naming what failed. Then its content against its schema.
 *
 * The MAC comes first: whether a diff is authentic must not depend on its shape, so one not made by `airlock diff`
 * under this secret is refused as such (exit 2, in the trail as a refused attempt) however it is malformed, with
 * the schema's finding added to the message. The MAC is over diff.json's bytes, which need no shape. Only a diff
 * whose MAC holds but whose shape this version does not read (made by another version) is AIRLOCK_STATE_INVALID.
 */
export function checkDiffMac(read: { id: string; dir: string }, secret: string): void {
  const file = join(read.dir, "diff.mac");
  const short = read.id.slice(0, 12);
  const diffFile = join(read.dir, "diff.json");
  const text = readFileSync(diffFile, "utf8");
  const shape = (): string => {
    let problem: string | undefined;
    try {
      problem = stateProblem(diffFileSchema, JSON.parse(text));
    } catch {
      problem = "not valid JSON";
    }
    return problem === undefined ? "" : `; ${displayPath(diffFile)}: ${problem}`;
  };
  if (!existsSync(file)) {
    throw new AirlockError(
      "AIRLOCK_DIFF_NOT_AUTHENTIC",
      `diff ${short} has no MAC (diff.mac): it was not made by \`airlock diff\` (or was made before diffs were authenticated)`,
      {
        hint: "discard it and run `airlock diff` on the session again",
        exitCode: EXIT_REFUSED,
      },
    );
  }
  if (!diffKey(secret).holds(text, readFileSync(file, "utf8").trim())) {
    throw new AirlockError(
      "AIRLOCK_DIFF_NOT_AUTHENTIC",
      `diff ${short}'s MAC does not hold: its content or verification result is not what \`airlock diff\` wrote under this AIRLOCK_SECRET (forged, or made under another secret)${shape()}`,
      {
        hint: "discard it and run `airlock diff` on the session again; after rotating AIRLOCK_SECRET, take a new snapshot and diff again",
        exitCode: EXIT_REFUSED,
      },
    );
  }
  const created = readCreated(read.dir);
  if (!("problem" in created) && !diffKey(secret).holds(createdMessage(read.id, created.createdAt), created.mac)) {
    throw new AirlockError(
      "AIRLOCK_DIFF_NOT_AUTHENTIC",
      `diff ${short}'s creation time (created.json) does not carry a valid MAC: it is not what \`airlock diff\` wrote under this AIRLOCK_SECRET`,
      {
        hint: "discard it and run `airlock diff` on the session again",
        exitCode: EXIT_REFUSED,
      },
    );
  }
  checkState(diffFile, JSON.parse(text), diffFileSchema, {
    hint: `this diff was made by another version of Airlock; run \`airlock diff\` on the session again (diff ${short})`,
  });
}

/** Reads a diff (readDiff) and checks its MAC (checkDiffMac). */
export function readAuthenticDiff(project: Project, idOrPrefix: string, secret: string): { id: string; diff: Diff; dir: string } {
  const read = readDiff(project, idOrPrefix);
  checkDiffMac(read, secret);
  return read;
}
