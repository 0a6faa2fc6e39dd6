/**
 * What the trust tests (test/trust.test.ts) do as someone who can write
 * `.airlock/` or production's airlock schema but does not hold
 * AIRLOCK_SECRET: file a diff under its own sha256, copy the state to
 * another machine, rewrite the staging trail as a plain sha256 chain, drop
 * production's audit tables; and how a tampering is shown to be detected by
 * `airlock audit --verify --to` and undone.
 */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { GENESIS } from "../../src/audit/chain.ts";
import { journalFile } from "../../src/audit/journal.ts";
import { type Project, loadProject } from "../../src/config/load.ts";
import type { Diff } from "../../src/diff/types.ts";
import { canonicalJson, sha256Hex } from "../../src/format/canonical.ts";
import { testClusterDir } from "./cluster.ts";
import { airlock, prodQuery, prodUrl, project } from "./trust-production.ts";

/** Writes a diff as diff.json under its own sha256, as Airlock files one (without its MAC); its id and directory. */
export function fileDiff(diff: unknown): { id: string; dir: string } {
  const text = canonicalJson(diff);
  const id = sha256Hex(text);
  const dir = project.statePath("diffs", id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "diff.json"), text);
  return { id, dir };
}

/** A real diff turned into `CREATE ROLE forged LOGIN SUPERUSER` marked verified, filed under its own sha256 with a hand-written approval. */
export function fileForgedDiff(real: Diff): { forgedId: string; dir: string } {
  const forged = {
    ...real,
    schemaChanges: [
      { id: "role forged", kind: "role", action: "create", changed: [], sql: ["CREATE ROLE forged LOGIN SUPERUSER PASSWORD 'f'"], afterData: [] },
    ],
    hazards: [],
    verification: { ...real.verification, verified: true },
  };
  const { id: forgedId, dir } = fileDiff(forged);
  const approval = { id: "appr-forged", diffId: forgedId, approvedBy: "alice", approvedAt: new Date().toISOString(), accepted: [], note: null };
  writeFileSync(join(dir, "approval.json"), JSON.stringify(approval));
  return { forgedId, dir };
}

/** "Another machine": a project directory holding a copy of this one's diffs and snapshots. */
export async function copyToAnotherMachine(name: string): Promise<{ other: Project; otherDir: string }> {
  const otherDir = testClusterDir(name);
  mkdirSync(join(otherDir, ".airlock"), { recursive: true });
  for (const part of ["diffs", "snapshots"]) cpSync(project.statePath(part), join(otherDir, ".airlock", part), { recursive: true });
  return { other: await loadProject({ dir: otherDir }), otherDir };
}

/** `airlock audit --verify --to` production. */
export const verifyCli = () => airlock(["audit", "--verify", "--to", prodUrl]);

/** Runs `attack`, expects `airlock audit --verify --to` to fail naming `problem`, then `undo`es it and expects it to pass. */
export async function detects(attack: () => Promise<void> | void, problem: RegExp, undo: () => Promise<void> | void): Promise<void> {
  await attack();
  try {
    const r = await verifyCli();
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stderr).toMatch(/^AIRLOCK_AUDIT_TAMPERED: the audit trails are not intact:/m);
    expect(r.stderr).toMatch(problem);
  } finally {
    await undo();
  }
  const ok = await verifyCli();
  expect(ok.code, ok.stderr).toBe(0);
}

/** The staging trail's files as they are. */
export function stagingFiles(): { journal: string; head: string } {
  return { journal: readFileSync(journalFile(project), "utf8"), head: readFileSync(project.statePath("audit.head"), "utf8") };
}

/** Puts the staging trail's files back as `stagingFiles` read them. */
export function restoreStaging(saved: { journal: string; head: string }): void {
  writeFileSync(journalFile(project), saved.journal);
  writeFileSync(project.statePath("audit.head"), saved.head);
}

/** Deletes audit.jsonl and audit.head together. */
export function deleteStagingTrail(): void {
  rmSync(journalFile(project));
  rmSync(project.statePath("audit.head"));
}

/** Rewrites the staging trail from `journal` without its entry 2 and with entry 3's actor edited, chained and headed with plain sha256 (no key). */
export function rewriteStagingTrailUnkeyed(journal: string): void {
  const entries = journal
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const kept = entries.filter((_, i) => i !== 1);
  kept[1] = { ...kept[1], actor: "mallory" };
  let prev = GENESIS;
  const rewritten = kept.map((e, i) => {
    const content = { seq: i + 1, at: e.at, actor: e.actor, action: e.action, details: e.details, prev };
    const hash = sha256Hex(canonicalJson(content));
    prev = hash;
    return { ...content, hash };
  });
  writeFileSync(journalFile(project), `${rewritten.map((e) => JSON.stringify(e)).join("\n")}\n`);
  writeFileSync(project.statePath("audit.head"), `${rewritten.length} ${prev}\n`);
}

/** Production's audit rows as they are now; the function that puts them back once they were deleted. */
export async function keepProductionTrail(): Promise<() => Promise<void>> {
  const log = await prodQuery("SELECT * FROM airlock.audit_log ORDER BY seq");
  const head = await prodQuery("SELECT * FROM airlock.audit_head");
  return async () => {
    await prodQuery("INSERT INTO airlock.audit_log SELECT * FROM jsonb_populate_recordset(NULL::airlock.audit_log, $1::jsonb)", [JSON.stringify(log)]);
    await prodQuery("INSERT INTO airlock.audit_head SELECT * FROM jsonb_populate_recordset(NULL::airlock.audit_head, $1::jsonb)", [JSON.stringify(head)]);
  };
}

/** Drops production's audit tables, keeping copies of their rows in public. */
export const DROP_AUDIT_TABLES =
  "CREATE TABLE public.kept_log AS TABLE airlock.audit_log; CREATE TABLE public.kept_head AS TABLE airlock.audit_head; DROP TABLE airlock.audit_log, airlock.audit_head";

/** Recreates production's audit tables from the copies DROP_AUDIT_TABLES kept. */
export const RESTORE_AUDIT_TABLES = `CREATE TABLE airlock.audit_log (seq bigint PRIMARY KEY, at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, details jsonb NOT NULL, prev text NOT NULL, hash text NOT NULL);
  CREATE TABLE airlock.audit_head (one boolean PRIMARY KEY DEFAULT true CHECK (one), seq bigint NOT NULL, hash text NOT NULL);
  INSERT INTO airlock.audit_log SELECT * FROM public.kept_log; INSERT INTO airlock.audit_head SELECT * FROM public.kept_head;
  DROP TABLE public.kept_log, public.kept_head`;
