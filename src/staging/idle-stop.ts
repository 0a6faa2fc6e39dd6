/**
 * The embedded cluster stops by itself once nothing has needed it for a
 * while (`local.idleStop` in airlock.config.ts, default 30 minutes).
 *
 * Every command that opens the cluster (LocalBackend.ensureCluster) writes
 * `<cluster>/supervisor/idle.json` while it holds the cluster's lock: the
 * configured idle time and when it opened the cluster. The supervisor's
 * worker counts the cluster as busy while the project has a session of the
 * local backend (a record, or an `airlock up` still at work) or anything is
 * connected (through its proxy or to Postgres itself); once it has been idle
 * for the whole idle time since the later of that and the last opening, it
 * takes the same lock, checks again, stops the cluster and removes its own
 * pid files before letting go of the lock. A command waiting for the lock
 * then finds the cluster stopped and the supervisor down, and starts both
 * again, as any command does.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type pg from "pg";
import { z } from "zod";
import { claimState, withLockFile } from "../config/claims.ts";
import { stateProblem } from "../config/state-file.ts";
import { AirlockError } from "../errors.ts";
import { type LocalCluster, openCluster, stopCluster } from "../pg/cluster.ts";
import type { Proxy } from "./proxy.ts";
import { type IdleReport, supervisorPaths } from "./supervisor.ts";

/** The lock held while a command creates or starts the cluster, and while the supervisor stops it for idleness. */
export function clusterLockFile(clusterDir: string): string {
  return `${resolve(clusterDir)}.lock`;
}

/**
 * idle.json: the idle time in force (null: never), when a command last opened the cluster, the OS user its server
 * runs as (`local.serverUser` may name one the supervisor cannot know otherwise), and when it last stopped for idleness.
 */
export interface IdleFile {
  readonly idleStopMs: number | null;
  readonly openedAt: string;
  readonly serverUser?: string;
  readonly stoppedAt?: string;
}

const idleFileSchema = z.object({
  idleStopMs: z.number().nullable(),
  openedAt: z.string(),
  serverUser: z.string().optional(),
  stoppedAt: z.string().optional(),
});

function idleFilePath(clusterDir: string): string {
  return join(supervisorPaths(clusterDir).dir, "idle.json");
}

function writeIdleFile(clusterDir: string, file: IdleFile): void {
  const path = idleFilePath(clusterDir);
  mkdirSync(supervisorPaths(clusterDir).dir, { recursive: true, mode: 0o700 });
  writeFileSync(`${path}.tmp`, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** idle.json, or undefined when missing or not of its shape (then the cluster never stops by itself). */
export function readIdleFile(clusterDir: string): IdleFile | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(idleFilePath(clusterDir), "utf8"));
    return stateProblem(idleFileSchema, value) === undefined ? (value as IdleFile) : undefined;
  } catch {
    return undefined;
  }
}

/** Records that a command opened the cluster now, with the project's idle time; the caller holds the cluster's lock. */
export function markClusterOpened(clusterDir: string, idleStopMs: number | null, serverUser?: string, now = new Date()): void {
  writeIdleFile(clusterDir, { idleStopMs, openedAt: now.toISOString(), ...(serverUser === undefined ? {} : { serverUser }) });
}

/** A placeholder whose `airlock up` cannot be checked by pid still counts as at work this long (as session-records.ts judges it). */
const PLACEHOLDER_STALE_MS = 10 * 60_000;

/**
 * How many sessions of the local backend need the cluster: every record that is not another backend's (one that
 * does not read counts: it may be being written), and every `airlock up` still at work (not one that died).
 */
export function liveLocalSessions(sessionsDir: string, now = Date.now()): number {
  if (!existsSync(sessionsDir)) return 0;
  let n = 0;
  for (const f of readdirSync(sessionsDir)) {
    if (!f.endsWith(".json")) continue;
    const file = join(sessionsDir, f);
    let value: { id?: unknown; backend?: unknown; creating?: { backend?: unknown } } | null;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(file).mtimeMs;
      value = JSON.parse(readFileSync(file, "utf8")) as typeof value;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // removed meanwhile
      n++;
      continue;
    }
    if (typeof value !== "object" || value === null) {
      n++;
      continue;
    }
    if (typeof value.id === "string") {
      if (value.backend !== "docker" && value.backend !== "pulumi") n++;
      continue;
    }
    const creating = value.creating;
    if (creating?.backend === "docker" || creating?.backend === "pulumi") continue;
    const state = claimState(creating);
    if (state === "alive" || (state === "unknown" && now - mtimeMs < PLACEHOLDER_STALE_MS)) n++;
  }
  return n;
}

/** What the worker needs to judge and carry out an idle stop. */
export interface IdleContext {
  readonly clusterDir: string;
  readonly sessionsDir: string;
  readonly cluster: LocalCluster;
  readonly proxy: Proxy;
  /** The worker's own admin connection (not counted as a use). */
  readonly admin: pg.Client;
  readonly log: (line: string) => void;
}

/** The worker's view of how long the cluster has been idle. */
export class IdleClock {
  private lastBusy: number;

  constructor(
    private readonly ctx: IdleContext,
    now = Date.now(),
  ) {
    // A worker (re)started counts from its start: never sooner than a whole idle time after it.
    this.lastBusy = now;
  }

  /** Looks at what uses the cluster now; `due` when it has been idle for the whole idle time. */
  async observe(now = Date.now()): Promise<IdleReport & { readonly due: boolean }> {
    const sessions = liveLocalSessions(this.ctx.sessionsDir, now);
    const file = readIdleFile(this.ctx.clusterDir);
    const afterMs = file?.idleStopMs ?? null;
    const busy = sessions > 0 || [...this.ctx.proxy.connections().values()].some((n) => n > 0) || (await this.otherConnections()) > 0;
    if (busy) this.lastBusy = now;
    if (busy) return { afterMs, sessions, idleSince: null, stopsAt: null, due: false };
    const since = Math.max(this.lastBusy, Date.parse(file?.openedAt ?? "") || 0);
    const stopsAt = afterMs === null ? null : since + afterMs;
    return {
      afterMs,
      sessions,
      idleSince: new Date(since).toISOString(),
      stopsAt: stopsAt === null ? null : new Date(stopsAt).toISOString(),
      due: stopsAt !== null && now >= stopsAt,
    };
  }

  /** Client connections to Postgres other than the worker's own: an Airlock command or an administrator at work. */
  private async otherConnections(): Promise<number> {
    const r = await this.ctx.admin.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    );
    return r.rows[0]?.n ?? 0;
  }

  /**
   * Stops the cluster if it is still due once the cluster's lock is held (a command opening it meanwhile makes it
   * not due). On success the proxy and the admin connection are closed, the cluster is stopped with no server
   * process left, and the supervisor's pid files are gone, so the next command starts a new one; returns whether
   * it stopped. Busy with a command that holds the lock: not now.
   */
  async stopIfDue(): Promise<boolean> {
    const { clusterDir, cluster, proxy, admin, log } = this.ctx;
    try {
      return await withLockFile(
        clusterLockFile(clusterDir),
        "stopping the idle staging cluster",
        async () => {
          const now = await this.observe();
          if (!now.due) {
            log("not stopping the idle cluster: something needed it meanwhile");
            return false;
          }
          log(`nothing has needed the cluster since ${now.idleSince} (local.idleStop: ${now.afterMs} ms): stopping it`);
          await proxy.close().catch(() => undefined);
          await admin.end().catch(() => undefined);
          // pg_ctl runs as the server's own user: the one the opening command recorded, if it named one.
          const file = readIdleFile(clusterDir);
          const asOpened = file?.serverUser === undefined ? undefined : openCluster({ dir: clusterDir, serverUser: file.serverUser });
          await stopCluster(asOpened ?? cluster);
          writeIdleFile(clusterDir, { ...file, idleStopMs: now.afterMs, openedAt: file?.openedAt ?? now.idleSince!, stoppedAt: new Date().toISOString() });
          const p = supervisorPaths(clusterDir);
          rmSync(p.worker, { force: true });
          rmSync(p.keeperPid, { force: true });
          log("the cluster stopped for idleness; the supervisor ends");
          return true;
        },
        5_000,
      );
    } catch (e) {
      if (e instanceof AirlockError && e.code === "AIRLOCK_BUSY") {
        log("not stopping the idle cluster yet: a command holds its lock");
        return false;
      }
      throw e;
    }
  }
}
