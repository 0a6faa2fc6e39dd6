/**
 * Agent sessions: `airlock up`, `ls`, `down`, `gc`, `url`. A session is a
 * record under `.airlock/sessions/<id>.json` (0600: it holds the agent's
 * password) plus what its backend provisioned. Nothing half-made survives a
 * failure: the record is removed and the backend told to destroy.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import { procStat, processAlive } from "../os/processes.ts";
import type { Project } from "../config/load.ts";
import { localClusterDir, localClusterOptions } from "../config/load.ts";
import { stateError, stateProblem } from "../config/state-file.ts";
import { AirlockError } from "../errors.ts";
import { formatUrl, makeTarget, type PgTarget } from "../pg/connect.ts";
import { latestSnapshot, readManifest, snapshotDir, snapshotsDir } from "../snapshot/store.ts";
import type { BackendKind, Provisioned, StagingBackend } from "./backend.ts";
import { LocalBackend, sessionObjectNames } from "./local-backend.ts";
import { supervisorState } from "./supervisor.ts";

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

interface StoredSession extends SessionRecord {
  /** Only in the 0600 file; never printed except as part of the agent's own URL. */
  readonly agentPassword: string;
}

/** What a session record (a file with an `id`) is checked against when read; a placeholder has no `id` (see readEntry). */
const storedSessionSchema: z.ZodType<StoredSession> = z.object({
  id: z.string(),
  backend: z.enum(["local", "pulumi"]),
  snapshotId: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  agent: z.object({ host: z.string(), port: z.number(), database: z.string(), user: z.string() }),
  backendState: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  agentPassword: z.string(),
});

const NAME = /^[a-z][a-z0-9-]{0,39}$/;

function sessionsDir(project: Project): string {
  return project.statePath("sessions");
}

function sessionFile(project: Project, id: string): string {
  if (!NAME.test(id)) {
    throw new AirlockError("AIRLOCK_BAD_SESSION_NAME", `"${id}" is not a session name`, {
      hint: "use lowercase letters, digits and dashes, starting with a letter (at most 40)",
    });
  }
  return join(sessionsDir(project), `${id}.json`);
}

/** The backend of a kind for a project (the Pulumi one is loaded only when asked for). */
export async function backendFor(project: Project, kind: BackendKind): Promise<StagingBackend> {
  if (kind === "local") return new LocalBackend(localClusterOptions(project), sessionsDir(project));
  const { PulumiBackend } = await import("./pulumi-backend.ts");
  return new PulumiBackend({ stateDir: project.statePath(), projectDir: project.dir });
}

/** Options of `airlock up`. */
export interface UpOptions {
  readonly snapshotId?: string;
  readonly name?: string;
  readonly ttlMs?: number;
  /** Never expires (gc leaves it). */
  readonly keep?: boolean;
  readonly backend?: BackendKind;
  readonly now?: Date;
}

function publicRecord(s: StoredSession): SessionRecord {
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

function placeholderText(p: { backend: BackendKind; snapshotId: string; expiresAt: string | null; now: Date }): string {
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
type SessionEntry =
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

function readEntry(project: Project, file: string, id: string, now = Date.now()): SessionEntry {
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
    return { kind: "invalid", id, backend: recorded === "local" || recorded === "pulumi" ? recorded : project.config.staging.backend, error };
  }
  const c = typeof parsed === "object" && parsed !== null ? (parsed as Placeholder).creating : undefined;
  const backend = c?.backend === "local" || c?.backend === "pulumi" ? c.backend : project.config.staging.backend;
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

/** Creates a session from a snapshot (default: the newest) and returns its record. */
export async function createSession(project: Project, options: UpOptions = {}): Promise<SessionRecord> {
  const dir = snapshotsDir(project.statePath());
  const manifest = options.snapshotId === undefined ? latestSnapshot(dir) : readManifest(dir, options.snapshotId);
  // Checksums are checked where the snapshot is read (the restore), not here: a session from an
  // already restored template must not pay for hashing the whole snapshot again.
  const id = options.name ?? `s-${randomBytes(3).toString("hex")}`;
  const file = sessionFile(project, id);
  if (existsSync(file)) {
    throw new AirlockError("AIRLOCK_SESSION_EXISTS", `a session named ${id} exists already`, { hint: `pick another --name, or \`airlock down ${id}\` first` });
  }
  const kind = options.backend ?? project.config.staging.backend;
  const backend = await backendFor(project, kind);
  await backend.checkAvailable();
  const now = options.now ?? new Date();
  const expiresAt = options.keep === true ? null : new Date(now.getTime() + (options.ttlMs ?? project.config.staging.ttl)).toISOString();
  mkdirSync(sessionsDir(project), { recursive: true, mode: 0o700 });
  // Claim the name first, so that two `up --name x` cannot both proceed; the claim says who is at work.
  try {
    writeFileSync(file, placeholderText({ backend: kind, snapshotId: manifest.id, expiresAt, now }), { flag: "wx", mode: 0o600 });
  } catch {
    throw new AirlockError("AIRLOCK_SESSION_EXISTS", `a session named ${id} exists already`, { hint: `pick another --name, or \`airlock down ${id}\` first` });
  }
  try {
    const provisioned = await backend.provision({
      sessionId: id,
      snapshot: { dir: snapshotDir(dir, manifest.id), manifest },
      limits: {
        connectionLimit: project.config.staging.connectionLimit,
        statementTimeoutMs: project.config.staging.statementTimeout,
        ...(project.config.staging.diskQuota === undefined ? {} : { diskQuotaBytes: project.config.staging.diskQuota }),
      },
      expiresAt,
    });
    const { password, ...agent } = provisioned.agent;
    const stored: StoredSession = {
      id,
      backend: kind,
      snapshotId: manifest.id,
      createdAt: now.toISOString(),
      expiresAt,
      agent,
      backendState: provisioned.backendState,
      agentPassword: password,
    };
    writeFileSync(`${file}.tmp`, `${JSON.stringify(stored, null, 2)}\n`, { mode: 0o600 });
    chmodSync(`${file}.tmp`, 0o600);
    renameSync(`${file}.tmp`, file);
    recordEvent(project, { actor: defaultActor(), action: "up", details: { session: id, backend: kind, snapshot: manifest.id, expiresAt } });
    return publicRecord(stored);
  } catch (e) {
    rmSync(file, { force: true });
    rmSync(`${file}.tmp`, { force: true });
    throw e;
  }
}

/** A session's use of its limits, as the local supervisor last saw it (local sessions only). */
export interface SessionLimitsView {
  readonly connections: number;
  readonly connectionLimit: number;
  readonly diskBytes: number;
  readonly quotaBytes: number;
  /** Why a limit stopped it (null while it runs). */
  readonly stopped: string | null;
  /** False when the supervisor does not run: then no agent can connect. */
  readonly supervised: boolean;
}

/** What the supervisor reports of a local session; undefined for other backends. */
export function sessionLimits(project: Project, s: SessionRecord): SessionLimitsView | undefined {
  if (s.backend !== "local") return undefined;
  const state = supervisorState(localClusterDir(project));
  const u = state.report?.sessions[s.agent.user];
  const limit = s.backendState.connectionLimit;
  const quota = s.backendState.diskQuotaBytes;
  return {
    connections: u?.connections ?? 0,
    connectionLimit: typeof limit === "number" ? limit : project.config.staging.connectionLimit,
    diskBytes: u?.diskBytes ?? 0,
    quotaBytes: u?.quotaBytes ?? (typeof quota === "number" ? quota : 0),
    stopped: u?.stopped ?? null,
    supervised: state.state === "running",
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

function incompleteError(e: Extract<SessionEntry, { kind: "creating" | "broken" }>): AirlockError {
  return e.kind === "creating"
    ? new AirlockError("AIRLOCK_SESSION_NOT_FOUND", `session ${e.id} is still being created: ${e.reason}`, { hint: "wait for `airlock up` to finish" })
    : new AirlockError("AIRLOCK_SESSION_BROKEN", `session ${e.id} is broken: ${e.reason}`, {
        hint: `\`airlock down ${e.id}\` or \`airlock gc\` removes it and whatever it left`,
      });
}

function readStoredSession(project: Project, id: string): StoredSession {
  const entry = readEntry(project, sessionFile(project, id), id);
  if (entry.kind === "invalid") throw entry.error;
  if (entry.kind !== "record") throw incompleteError(entry);
  return entry.stored;
}

/** One session's record. */
export function readSession(project: Project, id: string): SessionRecord {
  return publicRecord(readStoredSession(project, id));
}

/** The agent's connection: a target (for Airlock) and the URL with the password (for the agent only). */
export function agentConnection(project: Project, id: string): { target: PgTarget; url: string } {
  const s = readStoredSession(project, id);
  const target = makeTarget({ ...s.agent, password: s.agentPassword });
  return { target, url: formatUrl(target, true) };
}

/** A superuser connection to a session's base or work database. */
export async function sessionAdminTarget(project: Project, id: string, which: "base" | "work"): Promise<PgTarget> {
  const s = readSession(project, id);
  return (await backendFor(project, s.backend)).adminTarget(s.id, s.backendState, which);
}

/**
 * Destroys a session: its databases, role (or stack), and record. A broken one (its `up` died) too: the
 * backend destroys by the session's id whatever got made, and the local backend also drops a template
 * restore the dead `up` left half-done. One still being created is refused.
 */
export async function destroySession(project: Project, id: string): Promise<void> {
  const entry = readEntry(project, sessionFile(project, id), id);
  if (entry.kind === "creating") throw incompleteError(entry);
  const kind = entry.kind === "record" ? entry.stored.backend : entry.backend;
  const backend = await backendFor(project, kind);
  if (entry.kind === "record") {
    await backend.destroy(id, entry.stored.backendState);
  } else if (entry.kind === "invalid") {
    // Its recorded backend state is not to be trusted: the backend destroys by the session's id, as for a broken one.
    await backend.destroy(id, {});
  } else {
    await backend.destroy(id, {});
    if (backend instanceof LocalBackend) await backend.dropAbandonedTemplateLoads();
  }
  rmSync(sessionFile(project, id), { force: true });
  recordEvent(project, {
    actor: defaultActor(),
    action: "down",
    details: {
      session: id,
      backend: kind,
      ...(entry.kind === "broken" ? { broken: entry.reason } : entry.kind === "invalid" ? { invalid: entry.error.message } : {}),
    },
  });
}

/** Destroys every expired session, and every broken one (its `up` died); returns their ids. */
export async function gcSessions(project: Project, now = new Date()): Promise<string[]> {
  const gone = listSessions(project).filter((s) =>
    isIncomplete(s) ? s.incomplete === "broken" : s.expiresAt !== null && Date.parse(s.expiresAt) <= now.getTime(),
  );
  const destroyed: string[] = [];
  for (const s of gone) {
    try {
      await destroySession(project, s.id);
      destroyed.push(s.id);
    } catch (e) {
      // Gone meanwhile (another gc or down), or its `up` turned out alive after all: not this gc's to remove.
      if (!(e instanceof AirlockError && e.code === "AIRLOCK_SESSION_NOT_FOUND")) throw e;
    }
  }
  return destroyed;
}
