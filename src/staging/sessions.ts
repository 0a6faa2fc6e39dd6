/**
 * Agent sessions: `airlock up`, `ls`, `down`, `gc`, `url`. A session is a
 * record under `.airlock/sessions/<id>.json` (0600: it holds the agent's
 * password) plus what its backend provisioned. Nothing half-made survives a
 * failure: the record is removed and the backend told to destroy. The
 * records themselves (format, placeholder, reading) are session-records.ts.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import type { Project } from "../config/load.ts";
import { localClusterDir, localClusterOptions } from "../config/load.ts";
import { AirlockError } from "../errors.ts";
import { formatUrl, makeTarget, type PgTarget } from "../pg/connect.ts";
import { latestSnapshot, readManifest, snapshotDir, snapshotsDir } from "../snapshot/store.ts";
import type { AgentLimits, BackendKind, ProvisionProgress, StagingBackend } from "./backend.ts";
import type { ContainerSettings } from "./container-settings.ts";
import { dockerEndpoint, probeDocker } from "./docker-engine.ts";
import { LocalBackend } from "./local-backend.ts";
import {
  type SessionRecord,
  type StoredSession,
  incompleteError,
  isIncomplete,
  listSessions,
  placeholderText,
  publicRecord,
  readEntry,
  readSession,
  readStoredSession,
  sessionFile,
  sessionsDir,
  writeStoredSession,
} from "./session-records.ts";
import { supervisorState } from "./supervisor.ts";

export { type IncompleteSession, type SessionRecord, isIncomplete, listSessions, readSession } from "./session-records.ts";

/** The backend of a kind for a project (the Pulumi one is loaded only when asked for). */
export async function backendFor(project: Project, kind: BackendKind): Promise<StagingBackend> {
  if (kind === "local") return new LocalBackend(localClusterOptions(project), sessionsDir(project), project.config.local.idleStop);
  if (kind === "docker") {
    const { DockerBackend } = await import("./docker-backend.ts");
    return new DockerBackend(await containerSettings(project));
  }
  const { PulumiBackend } = await import("./pulumi-backend.ts");
  return new PulumiBackend({ stateDir: project.statePath(), projectDir: project.dir, container: await containerSettings(project) });
}

/** The `staging.docker` section as both container backends take it. */
export async function containerSettings(project: Project): Promise<ContainerSettings> {
  const { defaultImageTag } = await import("./image-recipe.ts");
  const docker = project.config.staging.docker;
  return {
    image: docker.image ?? defaultImageTag(),
    network: docker.network,
    memoryMb: Math.max(128, Math.floor(docker.memory / 1024 ** 2)),
    cpus: docker.cpus,
    project: projectLabel(project),
  };
}

/** The limits a project's sessions impose on their agent (`staging` config). */
export function agentLimits(project: Project): AgentLimits {
  const staging = project.config.staging;
  return {
    connectionLimit: staging.connectionLimit,
    statementTimeoutMs: staging.statementTimeout,
    ...(staging.diskQuota === undefined ? {} : { diskQuotaBytes: staging.diskQuota }),
  };
}

/** The label that ties a container to this project's state directory (gc leaves other projects' containers alone). */
export function projectLabel(project: Project): string {
  return createHash("sha256").update(resolve(project.statePath())).digest("hex").slice(0, 16);
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
  /** Told each phase as it starts: `start` (the backend: the local cluster started if it is not), then the backend's own. */
  readonly onProgress?: (p: SessionProgress) => void;
}

/** The phases of creating a session, for a person waiting (the backend's are ProvisionProgress). */
export type SessionProgress = { readonly phase: "start"; readonly backend: BackendKind } | ProvisionProgress;

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
  options.onProgress?.({ phase: "start", backend: kind });
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
      limits: agentLimits(project),
      expiresAt,
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
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
    writeStoredSession(file, stored);
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

/** What a container session's container is doing (docker sessions only; undefined for other backends or an unreachable engine). */
export async function containerHealth(project: Project, s: SessionRecord): Promise<{ state: string; detail: string | null } | undefined> {
  if (s.backend !== "docker") return undefined;
  const backend = await backendFor(project, "docker");
  const { DockerBackend } = await import("./docker-backend.ts");
  if (!(backend instanceof DockerBackend)) return undefined;
  try {
    return await backend.state(s.id);
  } catch (e) {
    return { state: "unknown", detail: `the Docker engine did not answer: ${(e as Error).message}` };
  }
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
  // Containers of this project whose records are gone (a deleted .airlock/sessions file) still carry their expiry.
  if ((await probeDocker(dockerEndpoint())) === null) {
    const { DockerBackend } = await import("./docker-backend.ts");
    const backend = await backendFor(project, "docker");
    if (backend instanceof DockerBackend) destroyed.push(...(await backend.removeExpiredOrphans(new Set(listSessions(project).map((s) => s.id)), now)));
  }
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
