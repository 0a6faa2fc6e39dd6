/**
 * Anchors tie the two audit trails to each other, without a cycle: a
 * production entry records where the staging trail ended when it was
 * written (`details.stagingHead`), and the staging entry written after that
 * production transaction committed records the production entry's sequence
 * number and hash (`details.productionEntry`). Each side is keyed, so an
 * anchor cannot be forged; deleting or rewriting one side is then visible
 * from the other whenever the other still exists: a staging trail deleted
 * as a whole, production's log emptied, its tables dropped or its schema
 * renamed.
 */
import { plural } from "../format/plural.ts";
import type { AuditEntry } from "./chain.ts";

/** Where the staging trail ended when a production entry was written (seq 0: it was empty). */
export interface StagingAnchor {
  /** stagingTrailId(): machine and state directory. */
  readonly trail: string;
  readonly seq: number;
  readonly hash: string;
}

/** The production entry an attempt wrote, as its staging entry records it. */
export interface ProductionAnchor {
  /** productionIdentity(): the server's system identifier (or address) and the database. */
  readonly database: string;
  /** How to name it to a person (no password). */
  readonly display: string;
  readonly seq: number;
  readonly hash: string;
}

/** Production as read for verification: its identity, and its log unless it has none. */
export interface ProductionTrail {
  readonly database: string;
  readonly display: string;
  /** false when there is no airlock.audit_log (never promoted to, or dropped, or its schema renamed). */
  readonly exists: boolean;
  readonly entries: readonly AuditEntry[];
}

/** What cross-checking the trails found. */
export interface AnchorCheck {
  /** Anchors checked both ways. */
  readonly checked: number;
  /** What is missing or altered, one sentence each. */
  readonly problems: readonly string[];
  /** Production entries anchored to another staging trail (another machine or checkout): not checkable from here. */
  readonly otherTrails: readonly string[];
  /** Databases other than the one checked that the staging trail records entries in. */
  readonly otherDatabases: readonly string[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

/** The staging anchor a production entry carries, if any. */
export function stagingAnchorOf(e: AuditEntry): StagingAnchor | undefined {
  const a = e.details.stagingHead;
  return isObject(a) && typeof a.trail === "string" && typeof a.seq === "number" && typeof a.hash === "string"
    ? { trail: a.trail, seq: a.seq, hash: a.hash }
    : undefined;
}

/** The production anchor a staging entry carries, if any. */
export function productionAnchorOf(e: AuditEntry): ProductionAnchor | undefined {
  const a = e.details.productionEntry;
  return isObject(a) && typeof a.database === "string" && typeof a.seq === "number" && typeof a.hash === "string"
    ? { database: a.database, display: typeof a.display === "string" ? a.display : a.database, seq: a.seq, hash: a.hash }
    : undefined;
}

/** An entry by its action and what it acted on: a promotion by its full id (its time alone is not unique), a diff by 12 characters. */
function what(e: AuditEntry): string {
  const { promotion, diff } = e.details;
  const id = typeof promotion === "string" ? promotion : typeof diff === "string" ? diff.slice(0, 12) : undefined;
  return `${e.action}${id === undefined ? "" : ` ${id}`}`;
}

/** Checks every anchor between this staging trail and one production database, both ways. */
export function checkAnchors(staging: readonly AuditEntry[], trail: string, production: ProductionTrail): AnchorCheck {
  const problems: string[] = [];
  const otherTrails = new Set<string>();
  const otherDatabases = new Set<string>();
  let checked = 0;
  const bySeq = new Map(production.entries.map((e) => [e.seq, e]));
  for (const s of staging) {
    const a = productionAnchorOf(s);
    if (a === undefined) continue;
    if (a.database !== production.database) {
      otherDatabases.add(a.display);
      continue;
    }
    checked++;
    const p = bySeq.get(a.seq);
    if (!production.exists)
      problems.push(
        `staging entry ${s.seq} (${what(s)}) records production entry ${a.seq} in ${production.display}, which has no airlock.audit_log: production's trail was dropped, or the airlock schema renamed`,
      );
    else if (p === undefined)
      problems.push(
        `staging entry ${s.seq} (${what(s)}) records production entry ${a.seq}, which airlock.audit_log of ${production.display} is missing: production entries were deleted`,
      );
    else if (p.hash !== a.hash)
      problems.push(
        `staging entry ${s.seq} (${what(s)}) records production entry ${a.seq} with another hash than production holds: production's trail was rewritten`,
      );
  }
  for (const p of production.entries) {
    const a = stagingAnchorOf(p);
    if (a === undefined) continue;
    if (a.trail !== trail) {
      otherTrails.add(a.trail);
      continue;
    }
    checked++;
    if (a.seq === 0) continue;
    const s = staging[a.seq - 1];
    if (s === undefined || s.seq !== a.seq)
      problems.push(
        `production entry ${p.seq} (${what(p)}) was written when the staging trail had ${plural(a.seq, "entry", "entries")}; it has ${staging.length} now: the staging trail lost entries or was deleted`,
      );
    else if (s.hash !== a.hash)
      problems.push(`production entry ${p.seq} (${what(p)}) anchors staging entry ${a.seq}, which now has another hash: the staging trail was rewritten`);
  }
  return { checked, problems, otherTrails: [...otherTrails], otherDatabases: [...otherDatabases] };
}
