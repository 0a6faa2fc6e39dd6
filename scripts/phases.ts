/**
 * What each long step's phases are called on a terminal and in a log: the library reports a phase by its
 * name as it starts (and how far some are), and these say it for a person. Only steps, tables and
 * shares are shown, never a value.
 */
import type { DiffProgress } from "../src/diff/diff.ts";
import type { PromoteProgress } from "../src/promote/promote.ts";
import type { RollbackProgress } from "../src/promote/rollback.ts";
import type { CaptureProgress } from "../src/snapshot/capture.ts";
import type { SessionProgress } from "../src/staging/sessions.ts";
import type { Progress } from "./output.ts";

/** The parts of a local restore, by the section of it that runs. */
const RESTORE_SECTIONS: Readonly<Record<string, string>> = {
  session: "creating the schema",
  roles: "creating the schema",
  "pre-data": "creating the schema",
  sequences: "setting the sequences",
  "post-data": "building indexes and constraints",
  matviews: "refreshing materialized views",
  settings: "applying the database's settings",
};

/** Creating a session (`up`, and `run` before its agent starts). */
export function sessionPhases(bar: Progress): (p: SessionProgress) => void {
  return (p) => {
    if (p.phase === "start")
      return bar.phase(
        p.backend === "local" ? "opening the staging cluster" : p.backend === "docker" ? "checking the Docker engine and its image" : "checking Pulumi",
      );
    if (p.phase !== "restore")
      return bar.phase(
        p.phase === "container"
          ? "creating the session container"
          : p.phase === "check"
            ? "checking the restored schema against production's"
            : "copying the template into the session's base and work databases",
      );
    if (p.into === "container") return bar.phase("restoring the snapshot in the session container");
    bar.phase("restoring the snapshot into its template, once for all its sessions");
    if (p.section === "data" && p.totalBytes !== undefined && p.totalBytes > 0)
      bar.update(`${Math.floor((100 * (p.bytes ?? 0)) / p.totalBytes)}% of the data${p.table === undefined ? "" : `, ${p.table}`}`);
    else if (p.section !== undefined && p.section !== "data") bar.update(RESTORE_SECTIONS[p.section] ?? p.section);
  };
}

const DIFF: Readonly<Record<DiffProgress["phase"], string>> = {
  schema: "reading and comparing the schemas of base and work",
  clone: "cloning base and applying the schema changes to it",
  checksums: "finding the tables whose rows changed",
  data: "comparing rows",
  hazards: "looking for hazards",
  replay: "replaying the diff on a fresh clone of base",
  verify: "verifying the replay against work (catalog and rows)",
};

/** Computing a diff (`diff`, and `run` after its agent exits). */
export function diffPhases(bar: Progress): (p: DiffProgress) => void {
  return (p) => {
    bar.phase(DIFF[p.phase]);
    if (p.table !== undefined) bar.update(p.table);
  };
}

/** Promoting (`promote`, with --dry-run too). */
export function promotePhases(bar: Progress, dryRun: boolean): (p: PromoteProgress) => void {
  const text: Readonly<Record<PromoteProgress["phase"], string>> = {
    connect: "connecting to production",
    privileges: "checking the approval and the role's privileges",
    conflicts: "locking the rows the diff touches and checking them against the snapshot",
    backup: "saving what the diff changes, for a rollback",
    apply: "applying the diff",
    record: "recording the way back and the audit entry",
    commit: dryRun ? "rolling the dry run back" : "committing",
    confirm: "reading the promoted rows back",
  };
  return (p) => bar.phase(text[p.phase]);
}

const ROLLBACK: Readonly<Record<RollbackProgress["phase"], string>> = {
  connect: "connecting to production",
  check: "checking that no row the promotion wrote changed since",
  restore: "putting the saved rows back",
  schema: "reversing the schema changes",
  verify: "checking that the schema is production's from before the promotion",
  commit: "committing",
};

/** Rolling a promotion back. */
export function rollbackPhases(bar: Progress): (p: RollbackProgress) => void {
  return (p) => bar.phase(ROLLBACK[p.phase]);
}

/** Capturing a snapshot. */
export function capturePhases(bar: Progress): (e: CaptureProgress) => void {
  return (e) => {
    if (e.phase === "table") {
      bar.phase(`copying and masking ${e.of} table${e.of === 1 ? "" : "s"}`);
      return bar.update(`[${e.index}/${e.of}] ${e.table}: ${e.rows.toLocaleString("en-US")} rows`);
    }
    bar.phase(
      e.phase === "plan"
        ? "checking privileges and looking for unruled personal data"
        : e.phase === "schema"
          ? "dumping the schema"
          : e.phase === "leak-scan"
            ? "scanning the snapshot for leaks"
            : "writing checksums",
    );
  };
}
