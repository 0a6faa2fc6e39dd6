/**
 * The diff step as users run it: compute, write the artifacts, return a
 * short summary (what `airlock diff` and `airlock run` print).
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import { requireSecret, secretFromEnv } from "../config/keys.ts";
import type { Project } from "../config/load.ts";
import { readManifest, requireSnapshotSecret, snapshotsDir } from "../snapshot/store.ts";
import { readSession } from "../staging/session-records.ts";
import { type DiffProgress, computeDiff } from "./diff.ts";
import { plural } from "../format/plural.ts";
import { writeDiff } from "./store.ts";
import type { Diff } from "./types.ts";

/** What a diff run produced. */
export interface DiffResult {
  readonly id: string;
  readonly dir: string;
  readonly diff: Diff;
  readonly elapsedMs: number;
}

/** Options of a diff run. */
export interface DiffSessionOptions {
  readonly onProgress?: (p: DiffProgress) => void;
  /** AIRLOCK_SECRET (default: the environment): the diff's MAC is keyed with it; it must be the snapshot's. */
  readonly secret?: string;
}

/** Computes and stores the diff of a session, authenticated with a MAC under AIRLOCK_SECRET. */
export async function diffSession(project: Project, sessionId: string, options: DiffSessionOptions = {}): Promise<DiffResult> {
  const started = Date.now();
  readSession(project, sessionId); // the session named first, then the environment: in the order a user reads the command
  const secret = requireSecret(secretFromEnv(options.secret), "airlock diff");
  const computed = await computeDiff(project, sessionId, options.onProgress === undefined ? {} : { onProgress: options.onProgress });
  // The MAC is only worth something under the secret promotion will check rows with.
  requireSnapshotSecret(readManifest(snapshotsDir(project.statePath()), computed.snapshot), secret, "airlock diff");
  // The same session diffed again is the same diff: it keeps the id, and the time it was first made.
  const { id, dir, createdAt } = writeDiff(project, computed, secret);
  const diff: Diff = { ...computed, createdAt };
  recordEvent(
    project,
    {
      actor: defaultActor(),
      action: "diff",
      details: {
        diff: id,
        session: sessionId,
        snapshot: diff.snapshot,
        verified: diff.verification.verified,
        summary: diff.summary,
        hazards: diff.hazards.map((h) => `${h.severity}:${h.code}`),
      },
    },
    secret,
  );
  return { id, dir, diff, elapsedMs: Date.now() - started };
}

/** "1 insert, 2 updates, 0 deletes, 1 schema statement": a summary's counts, with the right plurals. */
export function countsText(s: Diff["summary"]): string {
  return [plural(s.inserts, "insert"), plural(s.updates, "update"), plural(s.deletes, "delete"), plural(s.ddl, "schema statement")].join(", ");
}

/** Terminal lines summarising a diff: counts, verification, hazards, where the files are. */
export function summaryLines(r: DiffResult): string[] {
  const d = r.diff;
  const s = d.summary;
  const danger = d.hazards.filter((h) => h.severity === "danger");
  const lines = [
    // Danger first: code, privileges and settings headed for production, each with what it would run.
    ...danger.flatMap((h) => [
      `DANGER ${h.code} ${h.object}: ${h.message}`,
      ...(h.definition === undefined ? [] : h.definition.split("\n").map((l) => `    ${printable(l)}`)),
    ]),
    `diff ${r.id} for session ${d.session}: ${countsText(s)} (${(r.elapsedMs / 1000).toFixed(1)} s)`,
    d.verification.verified
      ? "verified: replaying the diff on a fresh clone of base reproduces work exactly"
      : `NOT verified: ${d.verification.error ?? [...d.verification.mismatches.map((m) => `${m.table} differs (e.g. ${m.keys.slice(0, 2).join(", ")})`), ...d.verification.schemaDifference.map((x) => `schema: ${x}`)].join("; ")}`,
  ];
  for (const t of d.tables) {
    const n = (k: string) => t.changes.filter((c) => c.kind === k).length;
    lines.push(`  ${t.schema}.${t.name}: +${n("insert")} ~${n("update")} -${n("delete")}`);
  }
  if (d.hazards.length === 0) lines.push("hazards: none");
  for (const h of d.hazards) if (h.severity !== "danger") lines.push(`  ${h.severity.toUpperCase().padEnd(6)} ${h.code} ${h.object}: ${h.message}`);
  if (danger.length > 0)
    lines.push(`  ${plural(danger.length, "danger hazard")} (shown above): approving needs ${[...new Set(danger.map((h) => `--accept ${h.code}`))].join(" ")}`);
  for (const c of d.schemaChanges) lines.push(`  schema: ${c.action} ${c.id}${c.forcedBy === undefined ? "" : ` (forced by ${c.forcedBy})`}`);
  // A file:// URL opens in any browser on any OS (and is clickable in most terminals).
  lines.push(
    `review: ${pathToFileURL(join(r.dir, "review.html")).href} (\`airlock review ${r.id.slice(0, 12)}\` opens it; also review.md, promote.sql, diff.json in ${r.dir})`,
  );
  return lines;
}

/** Agent-written text made safe for a terminal: control characters (escape sequences) shown as \\xNN. */
function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
