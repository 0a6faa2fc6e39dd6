/**
 * Agent sessions: `airlock up`, `ls`, `down`, `gc`, `url`. A session is a
 * record under `.airlock/sessions/<id>.json` (0600: it holds the agent's
 * password) plus what its backend provisioned. Nothing half-made survives a
 * failure: the record is removed and the backend told to destroy.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import type { Project } from "../config/load.ts";
import { localClusterDir, localClusterOptions } from "../config/load.ts";
import { AirlockError } from "../errors.ts";
import { formatUrl, makeTarget, type PgTarget } from "../pg/connect.ts";
import { latestSnapshot, readManifest, snapshotDir, snapshotsDir } from "../snapshot/store.ts";
import type { BackendKind, Provisioned, StagingBackend } from "./backend.ts";
import { LocalBackend } from "./local-backend.ts";
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

const NAME = /^[a-z][a-z0-9-]{0,39}$/;

function sessionsDir(project: Project): string {
  return project.statePath("sessions");
}

function sessionFile(project: Project, id: string): string {
  if (!NAME.test(id)) {
    throw new AirlockError("AIRLOCK_BAD_SESSION_NAME", `"${id}" is not a session name`, { hint: "use lowercase letters, digits and dashes, starting with a letter (at most 40)" });
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

function readStored(file: string): StoredSession {
  return JSON.parse(readFileSync(file, "utf8")) as StoredSession;
}

function publicRecord(s: StoredSession): SessionRecord {
  const { agentPassword: _hidden, ...record } = s;
  return record;
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
  // Claim the name first, so that two `up --name x` cannot both proceed.
  try {
    writeFileSync(file, "{}", { flag: "wx", mode: 0o600 });
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
    const stored: StoredSession = { id, backend: kind, snapshotId: manifest.id, createdAt: now.toISOString(), expiresAt, agent, backendState: provisioned.backendState, agentPassword: password };
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

/** Every session, oldest first. */
export function listSessions(project: Project): SessionRecord[] {
  const dir = sessionsDir(project);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => readStored(join(dir, f)))
    .filter((s) => s.id !== undefined)
    .map(publicRecord)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

function readStoredSession(project: Project, id: string): StoredSession {
  const file = sessionFile(project, id);
  if (!existsSync(file)) throw new AirlockError("AIRLOCK_SESSION_NOT_FOUND", `no session ${id}`, { hint: "list sessions with `airlock ls`" });
  const s = readStored(file);
  if (s.id === undefined) throw new AirlockError("AIRLOCK_SESSION_NOT_FOUND", `session ${id} is still being created`, { hint: "wait for `airlock up` to finish" });
  return s;
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

/** Destroys a session: its databases, role (or stack), and record. */
export async function destroySession(project: Project, id: string): Promise<void> {
  const s = readSession(project, id);
  await (await backendFor(project, s.backend)).destroy(s.id, s.backendState);
  rmSync(sessionFile(project, id), { force: true });
  recordEvent(project, { actor: defaultActor(), action: "down", details: { session: id, backend: s.backend } });
}

/** Destroys every expired session; returns their ids. */
export async function gcSessions(project: Project, now = new Date()): Promise<string[]> {
  const expired = listSessions(project).filter((s) => s.expiresAt !== null && Date.parse(s.expiresAt) <= now.getTime());
  for (const s of expired) await destroySession(project, s.id);
  return expired.map((s) => s.id);
}
