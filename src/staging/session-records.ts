/**
 * Session records: the 0600 file under `.airlock/sessions/<id>.json` that
 * holds a session's connection (with the agent's password) and its
 * backend's state, the placeholder `airlock up` writes first to claim the
 * name, and reading a file back as a record, a claim still at work, a claim
 * whose `up` died, or a record that does not fit its schema. The lifecycle
 * that creates and removes sessions (up, down, gc) is in sessions.ts.
 */
import { chmodSync, existsSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { Project } from "../config/load.ts";
import { stateError, stateProblem } from "../config/state-file.ts";
import { AirlockError } from "../errors.ts";
import { procStat, processAlive } from "../os/processes.ts";
import type { BackendKind, Provisioned } from "./backend.ts";
import { sessionObjectNames } from "./local-backend.ts";

/** A session as recorded on disk. */
export interface SessionRecord {
  readonly id: string;
  readonly backend: BackendKind;
  readonly snapshotId: string;
  readonly createdAt: string;
  /** null: kept until `airlock down` (`--keep`). */
  readonly expiresAt: string | null;
  readonly agent: { readonly host: string; readonly port: number; readonly database: string; readonly user: string };
  readonly backendState: Provisioned["backendState"];
}

/** A session record as stored: with the agent's password. */
export interface StoredSession extends SessionRecord {
  /** Only in the 0600 file; never printed except as part of the agent's own URL. */
  readonly agentPassword: string;
}

/** What a session record (a file with an `id`) is checked against when read; a placeholder has no `id` (see readEntry). */
const storedSessionSchema: z.ZodType<StoredSession> = z.object({
  id: z.string(),
  backend: z.enum(["local", "docker", "pulumi"]),
  snapshotId: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  agent: z.object({ host: z.string(), port: z.number(), database: z.string(), user: z.string() }),
  backendState: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  agentPassword: z.string(),
});

/** What a session name may be (it names the record's file). */
const NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** Where session records are kept. */
export function sessionsDir(project: Project): string {
  return project.statePath("sessions");
}

/** The record file of a session; refuses a name that is not one. */
export function sessionFile(project: Project, id: string): string {
  if (!NAME.test(id)) {
    throw new AirlockError("AIRLOCK_BAD_SESSION_NAME", `"${id}" is not a session name`, {
      hint: "use lowercase letters, digits and dashes, starting with a letter (at most 40)",
    });
  }
  return join(sessionsDir(project), `${id}.json`);
}

/** A record without the agent's password. */
export function publicRecord(s: StoredSession): SessionRecord {
  const { agentPassword: _hidden, ...record } = s;
  return record;
}

/**
 * What `airlock up` writes to claim a session's name before it provisions anything: who is at work (pid,
 * the process's start time, host), so that a claim whose `up` died (kill -9, a crash, a power cut) can be
 * told from one still at work. It has no `id`: nothing reads it as a session record.
 */
interface Placeholder {
  readonly creating?: {
    readonly pid?: number;
    /** The process's start time (Linux: /proc/<pid>/stat field 22), so a reused pid is not taken for it. */
    readonly pidStart?: string;
    readonly host?: string;
    readonly startedAt?: string;
    readonly backend?: BackendKind;
    readonly snapshotId?: string;
    readonly expiresAt?: string | null;
  };
}

/** A placeholder without a pid (written by an older Airlock as `{}`, or cut short) counts as dead after this. */
const PLACEHOLDER_STALE_MS = 10 * 60_000;

/** The placeholder `airlock up` writes for this process. */
export function placeholderText(p: { backend: BackendKind; snapshotId: string; expiresAt: string | null; now: Date }): string {
  const pidStart = procStat("self")?.start;
  const creating: Placeholder["creating"] = {
    pid: process.pid,
    ...(pidStart === undefined ? {} : { pidStart }),
    host: hostname(),
    startedAt: p.now.toISOString(),
    backend: p.backend,
    snapshotId: p.snapshotId,
    expiresAt: p.expiresAt,
  };
  return `${JSON.stringify({ creating }, null, 2)}\n`;
}

/**
 * A session file as found: a complete record, or a claim of an `up` still at work ("creating") or dead ("broken"),
 * or a record that does not fit its schema ("invalid": edited by hand, or damaged), which only `down` removes.
 */
export type SessionEntry =
  | { readonly kind: "record"; readonly stored: StoredSession }
  | { readonly kind: "invalid"; readonly id: string; readonly backend: BackendKind; readonly error: AirlockError }
  | {
      readonly kind: "creating" | "broken";
      readonly id: string;
      readonly reason: string;
      readonly backend: BackendKind;
      readonly placeholder: Placeholder["creating"];
      readonly since: string;
    };

/** Reads a session file as a record, a claim (at work or dead), or an invalid record. */
export function readEntry(project: Project, file: string, id: string, now = Date.now()): SessionEntry {
  let text: string;
  let mtimeMs: number;
  try {
    text = readFileSync(file, "utf8");
    mtimeMs = statSync(file).mtimeMs;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT")
      throw new AirlockError("AIRLOCK_SESSION_NOT_FOUND", `no session ${id}`, { hint: "list sessions with `airlock ls`" });
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = {}; // cut short while being written: judged by its age
  }
  if (typeof parsed === "object" && parsed !== null && typeof (parsed as { id?: unknown }).id === "string") {
    const problem = stateProblem(storedSessionSchema, parsed);
    if (problem === undefined) return { kind: "record", stored: parsed as StoredSession };
    // Never removed by gc (its databases may hold work someone wants): an error until it is restored or taken down.
    const recorded = (parsed as { backend?: unknown }).backend;
    const error = stateError(file, problem, { hint: `restore the record as \`airlock up\` wrote it, or remove the session with \`airlock down ${id}\`` });
    return {
      kind: "invalid",
      id,
      backend: recorded === "local" || recorded === "docker" || recorded === "pulumi" ? recorded : project.config.staging.backend,
      error,
    };
  }
  const c = typeof parsed === "object" && parsed !== null ? (parsed as Placeholder).creating : undefined;
  const backend = c?.backend === "local" || c?.backend === "docker" || c?.backend === "pulumi" ? c.backend : project.config.staging.backend;
  const since = c?.startedAt ?? new Date(mtimeMs).toISOString();
  const base = { id, backend, placeholder: c, since };
  const pid = c?.pid;
  if (typeof pid === "number" && Number.isInteger(pid) && pid > 0 && c?.host === hostname()) {
    return processAlive(pid, c.pidStart)
      ? { kind: "creating", ...base, reason: `being created by \`airlock up\` (pid ${pid}) since ${since}` }
      : { kind: "broken", ...base, reason: `its \`airlock up\` (pid ${pid}, started ${since}) died before finishing` };
  }
  // No pid this host can check (an older Airlock's `{}`, a cut-short file, another machine's claim): judged by its age.
  const age = now - Math.max(mtimeMs, Date.parse(since) || 0);
  return age > PLACEHOLDER_STALE_MS
    ? { kind: "broken", ...base, reason: `its \`airlock up\` left it unfinished at ${since} (nothing has worked on it for ${Math.round(age / 60_000)} min)` }
    : { kind: "creating", ...base, reason: `being created since ${since}` };
}

/** A session whose `airlock up` has not finished: still at work, or dead (`broken`: `down` and `gc` remove it). */
export interface IncompleteSession extends SessionRecord {
  readonly incomplete: "creating" | "broken";
  /** Why, for people. */
  readonly reason: string;
}

/** True for a session `airlock up` did not finish (still at work, or broken). */
export function isIncomplete(s: SessionRecord): s is IncompleteSession {
  return "incomplete" in s;
}

/** An unfinished session as listed. */
function incompleteRecord(e: Extract<SessionEntry, { kind: "creating" | "broken" }>): IncompleteSession {
  const names = e.backend === "local" ? sessionObjectNames(e.id) : undefined;
  return {
    id: e.id,
    backend: e.backend,
    snapshotId: e.placeholder?.snapshotId ?? "",
    createdAt: e.since,
    expiresAt: e.placeholder?.expiresAt ?? null,
    agent: { host: "", port: 0, database: names?.work ?? "", user: names?.role ?? "" },
    backendState: {},
    incomplete: e.kind,
    reason: e.reason,
  };
}

/**
 * Every session, oldest first; one whose `airlock up` has not finished is listed as an IncompleteSession
 * (`incomplete: "creating"` while its `up` still runs, `"broken"` once that died).
 */
export function listSessions(project: Project): SessionRecord[] {
  const dir = sessionsDir(project);
  if (!existsSync(dir)) return [];
  const now = Date.now();
  const out: SessionRecord[] = [];
  for (const f of readdirSync(dir)) {
    const id = f.slice(0, -".json".length);
    if (!f.endsWith(".json") || !NAME.test(id)) continue;
    let entry: SessionEntry;
    try {
      entry = readEntry(project, join(dir, f), id, now);
    } catch (e) {
      if (e instanceof AirlockError && e.code === "AIRLOCK_SESSION_NOT_FOUND") continue; // removed meanwhile
      throw e;
    }
    if (entry.kind === "invalid") throw entry.error;
    out.push(entry.kind === "record" ? publicRecord(entry.stored) : incompleteRecord(entry));
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

/** Why an unfinished session cannot be used yet (or any more). */
export function incompleteError(e: Extract<SessionEntry, { kind: "creating" | "broken" }>): AirlockError {
  return e.kind === "creating"
    ? new AirlockError("AIRLOCK_SESSION_NOT_FOUND", `session ${e.id} is still being created: ${e.reason}`, { hint: "wait for `airlock up` to finish" })
    : new AirlockError("AIRLOCK_SESSION_BROKEN", `session ${e.id} is broken: ${e.reason}`, {
        hint: `\`airlock down ${e.id}\` or \`airlock gc\` removes it and whatever it left`,
      });
}

/** A complete session's record, password included; an error for an unfinished or invalid one. */
export function readStoredSession(project: Project, id: string): StoredSession {
  const entry = readEntry(project, sessionFile(project, id), id);
  if (entry.kind === "invalid") throw entry.error;
  if (entry.kind !== "record") throw incompleteError(entry);
  return entry.stored;
}

/** Writes a session's complete record over its placeholder, 0600, in one rename. */
export function writeStoredSession(file: string, stored: StoredSession): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
  chmodSync(`${file}.tmp`, 0o600);
  renameSync(`${file}.tmp`, file);
}

/** One session's record. */
export function readSession(project: Project, id: string): SessionRecord {
  return publicRecord(readStoredSession(project, id));
}
