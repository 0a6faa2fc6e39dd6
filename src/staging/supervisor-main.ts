/**
 * The supervisor's processes (see src/staging/supervisor.ts):
 * `supervisor-main.ts keeper|worker <clusterDir> <sessionsDir>`.
 *
 * The keeper only restarts the worker when it dies. The worker:
 * - serves the proxy, the cluster's only TCP door: one session's storm of
 *   connections or stalled handshakes costs the proxy sockets, never
 *   Postgres backend slots, and at most the session's own connection limit
 *   once authenticated;
 * - every 250 ms cancels any statement of an agent role running past its
 *   session's limit, and terminates it 2 s later if it still runs — whatever
 *   `statement_timeout` the agent set for itself;
 * - every 250 ms compares each session's work database with its disk quota;
 *   past it, the session is stopped: its connections are ended, its role can
 *   no longer log in, and the proxy answers its next connection with why;
 * - runs a CHECKPOINT when pg_wal grows past twice max_wal_size;
 * - writes what it sees to status.json every second, for `airlock ls`;
 * - stops the cluster once nothing has needed it for `local.idleStop` (idle-stop.ts).
 * Both processes end when the cluster stops, and the worker when its keeper dies.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { stateProblem } from "../config/state-file.ts";
import { clusterStatus, openCluster } from "../pg/cluster.ts";
import { openClient, quoteIdent } from "../pg/connect.ts";
import { IdleClock } from "./idle-stop.ts";
import { type Proxy, type ProxySession, startProxy } from "./proxy.ts";
import { type SessionUsage, stoppedFileSchema, supervisorEntryArgs, supervisorPaths } from "./supervisor.ts";

const [mode, clusterDir, sessionsDir] = process.argv.slice(2) as ["keeper" | "worker", string, string];
const files = supervisorPaths(clusterDir);
const log = (line: string) => process.stdout.write(`${new Date().toISOString()} ${mode} ${process.pid}: ${line}\n`);

/** The worker's exit code when another worker already serves the port: the keeper then ends too. */
const EXIT_ANOTHER = 3;

/** The cluster, opened once (its binaries are found once, not on every tick). */
const cluster = openCluster({ dir: clusterDir });

/** Whether the supervised cluster runs: its own status check (pid file and postmaster), which ends when it is destroyed too. */
function clusterRunning(): boolean {
  return cluster !== undefined && clusterStatus(cluster).state === "running";
}

function writeAtomic(file: string, data: unknown): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

function runKeeper(): void {
  writeFileSync(files.keeperPid, `${process.pid}\n`, { mode: 0o600 });
  let child: ChildProcess | undefined;
  let stopping = false;
  const stop = () => {
    stopping = true;
    child?.kill("SIGTERM");
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  const start = () => {
    child = spawn(process.execPath, supervisorEntryArgs("worker", clusterDir, sessionsDir), { stdio: ["ignore", "inherit", "inherit"] });
    child.on("exit", (code, signal) => {
      if (stopping || code === 0 || code === EXIT_ANOTHER || !clusterRunning()) {
        log(`worker ended (${signal ?? code}); keeper ends`);
        process.exit(0);
      }
      log(`worker died (${signal ?? code}); restarting it`);
      setTimeout(start, 300);
    });
  };
  log("started");
  start();
}

/** A session as the worker needs it, from its record (the 0600 file holds the agent's password). */
interface Watched extends ProxySession {
  readonly id: string;
  readonly statementTimeoutMs: number;
  readonly quotaBytes: number;
}

function dirMtime(): number {
  try {
    return statSync(sessionsDir).mtimeMs;
  } catch {
    return 0;
  }
}

/** The fields of a local session's record (src/staging/sessions.ts) the worker needs. */
const watchedRecordSchema = z.object({
  id: z.string(),
  backend: z.literal("local"),
  agent: z.object({ user: z.string(), database: z.string() }),
  agentPassword: z.string(),
  backendState: z
    .object({ connectionLimit: z.number().optional(), statementTimeoutMs: z.number().optional(), diskQuotaBytes: z.number().optional() })
    .optional(),
});

function readSessions(): Map<string, Watched> {
  const out = new Map<string, Watched>();
  if (!existsSync(sessionsDir)) return out;
  for (const f of readdirSync(sessionsDir)) {
    if (!f.endsWith(".json")) continue;
    try {
      const value: unknown = JSON.parse(readFileSync(join(sessionsDir, f), "utf8"));
      // A placeholder (no id: `up` at work) or another backend's session is not the worker's.
      if (typeof value !== "object" || value === null || !("id" in value) || (value as { backend?: unknown }).backend !== "local") continue;
      const problem = stateProblem(watchedRecordSchema, value);
      if (problem !== undefined) {
        log(`not serving the session in ${f}: ${problem}`);
        continue;
      }
      const s = value as z.output<typeof watchedRecordSchema>;
      const b = s.backendState ?? {};
      out.set(s.agent.user, {
        id: s.id,
        role: s.agent.user,
        database: s.agent.database,
        password: s.agentPassword,
        maxConnections: b.connectionLimit ?? 20,
        statementTimeoutMs: b.statementTimeoutMs ?? 300_000,
        quotaBytes: b.diskQuotaBytes ?? 1024 ** 3,
      });
    } catch {
      // A record being written: seen on the next tick.
    }
  }
  return out;
}

/**
 * The sessions a limit stopped. A stopped.json that does not read is started over, logged: a session still over its
 * disk quota is stopped again on the next check, and a stopped session's role cannot log in anyway (NOLOGIN).
 */
function readStopped(): Record<string, string> {
  if (!existsSync(files.stopped)) return {};
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(files.stopped, "utf8"));
  } catch {
    value = undefined;
  }
  const problem = value === undefined ? "not valid JSON" : stateProblem(stoppedFileSchema, value);
  if (problem === undefined) return value as Record<string, string>;
  log(`${files.stopped}: ${problem}; starting from no stopped sessions`);
  return {};
}

async function runWorker(): Promise<void> {
  if (cluster === undefined || !clusterRunning()) {
    log("the cluster does not run; nothing to supervise");
    process.exit(0);
  }
  const keeper = process.ppid;
  const port = Number(readFileSync(files.port, "utf8").trim());
  const stopped = readStopped();
  let sessions = readSessions();
  let sessionsMtime = dirMtime();
  const sessionsChanged = () => {
    const m = dirMtime();
    if (m === sessionsMtime) return false;
    sessionsMtime = m;
    return true;
  };
  let proxy: Proxy;
  try {
    proxy = await startProxy({
      host: "127.0.0.1",
      port,
      upstreamSocketDir: cluster.socketDir,
      upstreamPort: cluster.port,
      sessions: (role) => {
        // A session made since the last tick: read the records again, only when the directory changed (so a
        // flood of made-up role names costs a stat each, not a read of every record).
        if (!sessions.has(role)) {
          const changed = sessionsChanged();
          if (changed) sessions = readSessions();
        }
        const s = sessions.get(role);
        if (s === undefined) return undefined;
        const why = stopped[role];
        return why === undefined ? s : { ...s, stopped: why };
      },
      log,
    });
  } catch (e) {
    const cause = (e as { cause?: NodeJS.ErrnoException }).cause;
    if ((e as NodeJS.ErrnoException).code === "EADDRINUSE" || cause?.code === "EADDRINUSE") {
      log(`port ${port} is served by another supervisor`);
      process.exit(EXIT_ANOTHER);
    }
    throw e;
  }
  const admin = await openClient(cluster.adminTarget(), { step: "supervisor", statementTimeoutMs: 5_000 });
  admin.on("error", () => undefined);
  writeAtomic(files.worker, { pid: process.pid, port: proxy.port, startedAt: new Date().toISOString() });
  log(`serving 127.0.0.1:${proxy.port}`);

  const idle = new IdleClock({ clusterDir, sessionsDir, cluster, proxy, admin, log });
  let idleDue = false;
  const cancelledAt = new Map<number, number>();
  const disk = new Map<string, number>();
  let lastStatus = 0;
  let lastWal = 0;

  const stopSession = async (s: Watched, why: string) => {
    stopped[s.role] = why;
    writeAtomic(files.stopped, stopped);
    log(`stopped session ${s.id}: ${why}`);
    proxy.disconnect(s.role);
    await admin.query(`ALTER ROLE ${quoteIdent(s.role)} NOLOGIN`).catch(() => undefined);
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [s.role]).catch(() => undefined);
  };

  const tick = async () => {
    sessionsChanged();
    sessions = readSessions();
    for (const role of Object.keys(stopped)) if (!sessions.has(role)) delete stopped[role];
    const roles = [...sessions.keys()];
    if (roles.length > 0) {
      // Statement time, from outside the agent's reach.
      const active = await admin.query<{ pid: number; role: string; ms: number }>(
        `SELECT pid, usename AS role, (extract(epoch FROM clock_timestamp() - query_start) * 1000)::float8 AS ms
           FROM pg_stat_activity WHERE usename = ANY($1) AND state = 'active' AND backend_type = 'client backend'`,
        [roles],
      );
      const seen = new Set<number>();
      for (const a of active.rows) {
        const s = sessions.get(a.role)!;
        seen.add(a.pid);
        if (a.ms <= s.statementTimeoutMs) continue;
        const first = cancelledAt.get(a.pid);
        if (first === undefined) {
          cancelledAt.set(a.pid, Date.now());
          log(`cancelling a statement of session ${s.id} after ${Math.round(a.ms / 1000)} s (limit ${s.statementTimeoutMs / 1000} s)`);
          await admin.query("SELECT pg_cancel_backend($1)", [a.pid]);
        } else if (Date.now() - first > 2_000) {
          log(`terminating a backend of session ${s.id} that ignored its cancel`);
          await admin.query("SELECT pg_terminate_backend($1)", [a.pid]);
        }
      }
      for (const pid of cancelledAt.keys()) if (!seen.has(pid)) cancelledAt.delete(pid);
      // Disk.
      const sizes = await admin.query<{ role: string; bytes: string }>(
        `SELECT u.role, pg_database_size(d.oid)::text AS bytes FROM unnest($1::text[], $2::text[]) AS u(role, db) JOIN pg_database d ON d.datname = u.db`,
        [roles, roles.map((r) => sessions.get(r)!.database)],
      );
      for (const r of sizes.rows) {
        const s = sessions.get(r.role)!;
        const bytes = Number(r.bytes);
        disk.set(r.role, bytes);
        if (bytes > s.quotaBytes && stopped[r.role] === undefined) {
          await stopSession(
            s,
            `session ${s.id} is stopped: its disk quota of ${mib(s.quotaBytes)} is used up (${mib(bytes)} in its database); run \`airlock diff ${s.id}\` to keep its work, then \`airlock down ${s.id}\``,
          );
        }
      }
    }
    if (Date.now() - lastWal > 5_000) {
      lastWal = Date.now();
      const wal = await admin.query<{ bytes: string; max: string }>(
        "SELECT coalesce(sum(size), 0)::text AS bytes, pg_size_bytes(current_setting('max_wal_size'))::text AS max FROM pg_ls_waldir()",
      );
      if (Number(wal.rows[0]!.bytes) > 2 * Number(wal.rows[0]!.max)) {
        log(`pg_wal holds ${mib(Number(wal.rows[0]!.bytes))}: checkpoint`);
        await admin.query("CHECKPOINT");
      }
    }
    if (Date.now() - lastStatus > 1_000) {
      lastStatus = Date.now();
      const { due, ...idleReport } = await idle.observe();
      idleDue = due;
      const conns = proxy.connections();
      const report: Record<string, SessionUsage> = {};
      for (const [role, s] of sessions)
        report[role] = { connections: conns.get(role) ?? 0, diskBytes: disk.get(role) ?? 0, quotaBytes: s.quotaBytes, stopped: stopped[role] ?? null };
      writeAtomic(files.status, { updatedAt: new Date().toISOString(), pid: process.pid, port: proxy.port, sessions: report, idle: idleReport });
    }
  };

  const shutdown = async (code: number) => {
    await proxy.close().catch(() => undefined);
    await admin.end().catch(() => undefined);
    process.exit(code);
  };
  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));
  let failures = 0;
  for (;;) {
    if (!clusterRunning()) {
      log("the cluster stopped; the supervisor ends");
      return shutdown(0);
    }
    if (process.ppid !== keeper) {
      log("the keeper is gone; the worker ends");
      return shutdown(0);
    }
    try {
      await tick();
      failures = 0;
      // Idle for the whole idle time: stop the cluster, and with it this supervisor (a new one comes with the next start).
      if (idleDue && (await idle.stopIfDue())) process.exit(0);
    } catch (e) {
      if (!clusterRunning()) continue;
      log(`tick failed: ${(e as Error).message}`);
      // A broken admin connection does not heal: end, and let the keeper start a fresh worker.
      if (++failures >= 3) return shutdown(1);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function mib(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${(bytes / 1024 ** 3).toFixed(1)} GB` : `${Math.round(bytes / 1024 ** 2)} MB`;
}

if (mode === "keeper") runKeeper();
else
  await runWorker().catch((e: unknown) => {
    log(`failed: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  });
