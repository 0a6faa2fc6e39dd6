/**
 * The staging cluster's supervisor, as the CLI sees it: where it keeps its
 * files, whether it runs, how to start it, and what it last reported.
 *
 * The supervisor (src/staging/supervisor-main.ts) is two processes that
 * outlive the CLI: a keeper that restarts the worker whenever it dies, and
 * the worker, which is the staging cluster's only TCP door (an
 * authenticating proxy, src/staging/proxy.ts; Postgres itself listens only
 * on its Unix socket) and enforces every session's limits from outside the
 * agent's reach: statement time, connections, disk. Both end by themselves
 * when the cluster stops, and the worker stops the cluster once nothing has
 * needed it for `local.idleStop` (src/staging/idle-stop.ts). Files, under
 * `<cluster>/supervisor/` (0700):
 *
 *   port          the proxy's TCP port, chosen once (session URLs keep working across restarts)
 *   keeper.pid    the keeper's pid
 *   worker.json   the worker's pid and port, written once it listens
 *   status.json   per session: connections, disk used and quota, why it was stopped (every second)
 *   stopped.json  sessions a limit stopped, and why (kept across restarts)
 *   idle.json     the idle time in force, when a command last opened the cluster, when it last stopped for idleness
 *   supervisor.log
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { z } from "zod";
import { processAlive } from "../os/processes.ts";
import { displayPath, stateProblem } from "../config/state-file.ts";
import { AirlockError } from "../errors.ts";
import { findFreePort } from "../pg/cluster.ts";

/** What the worker reports for one session. */
export interface SessionUsage {
  readonly connections: number;
  readonly diskBytes: number;
  readonly quotaBytes: number;
  /** Why a limit stopped the session; null while it runs. */
  readonly stopped: string | null;
}

/** What the worker reports of the idle stop (src/staging/idle-stop.ts). */
export interface IdleReport {
  /** The idle time in force; null: the cluster never stops by itself. */
  readonly afterMs: number | null;
  /** Sessions that keep it running now. */
  readonly sessions: number;
  /** Since when nothing has needed the cluster; null while something does. */
  readonly idleSince: string | null;
  /** When it stops if nothing needs it meanwhile; null while something does, or never. */
  readonly stopsAt: string | null;
}

/** The worker's last report. */
export interface SupervisorReport {
  readonly updatedAt: string;
  readonly pid: number;
  readonly port: number;
  /** By agent role. */
  readonly sessions: Readonly<Record<string, SessionUsage>>;
  readonly idle?: IdleReport;
}

/** status.json: the worker's last report. */
const supervisorReportSchema: z.ZodType<SupervisorReport> = z.object({
  updatedAt: z.string(),
  pid: z.int(),
  port: z.int(),
  sessions: z.record(z.string(), z.object({ connections: z.number(), diskBytes: z.number(), quotaBytes: z.number(), stopped: z.string().nullable() })),
  idle: z.object({ afterMs: z.number().nullable(), sessions: z.number(), idleSince: z.string().nullable(), stopsAt: z.string().nullable() }).optional(),
});

/** worker.json: the worker's pid and port, written once it listens. */
const workerFileSchema = z.object({ pid: z.int(), port: z.int() });

/** stopped.json: why a limit stopped a session, by agent role. */
export const stoppedFileSchema = z.record(z.string(), z.string());

/** Whether the supervisor runs, and its last report. */
export interface SupervisorState {
  readonly state: "running" | "down";
  readonly keeperPid?: number;
  readonly workerPid?: number;
  readonly port?: number;
  readonly report?: SupervisorReport;
}

/** The supervisor's files for a cluster directory. */
export function supervisorPaths(clusterDir: string) {
  const dir = join(clusterDir, "supervisor");
  return {
    dir,
    port: join(dir, "port"),
    keeperPid: join(dir, "keeper.pid"),
    worker: join(dir, "worker.json"),
    status: join(dir, "status.json"),
    stopped: join(dir, "stopped.json"),
    log: join(dir, "supervisor.log"),
  };
}

/** Whether a process runs; a zombie (killed, not yet reaped — as orphans stay in a container whose init does not reap) does not. */
function isAlive(pid: number | undefined): boolean {
  return pid !== undefined && Number.isInteger(pid) && pid > 0 && processAlive(pid);
}

/**
 * A file the supervisor rewrites as it runs, or undefined when it is missing, unreadable or not of its shape: the
 * supervisor is then taken as down (and the next start rewrites it), as for a file not written yet.
 */
function readJson<S extends z.ZodType>(file: string, schema: S): z.output<S> | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(file, "utf8"));
    return stateProblem(schema, value) === undefined ? (value as z.output<S>) : undefined;
  } catch {
    return undefined;
  }
}

/** What is wrong with a supervisor file that exists, for an error message ("" when nothing is). */
function fileProblem(file: string, schema: z.ZodType): string {
  if (!existsSync(file)) return "";
  try {
    const problem = stateProblem(schema, JSON.parse(readFileSync(file, "utf8")));
    return problem === undefined ? "" : `${displayPath(file)}: ${problem}`;
  } catch {
    return `${displayPath(file)}: not valid JSON`;
  }
}

/** Whether the supervisor of a cluster runs (keeper and worker alive), and what it last reported. */
export function supervisorState(clusterDir: string): SupervisorState {
  const p = supervisorPaths(clusterDir);
  const keeperPid = existsSync(p.keeperPid) ? Number(readFileSync(p.keeperPid, "utf8").trim()) : undefined;
  const worker = readJson(p.worker, workerFileSchema);
  const report = readJson(p.status, supervisorReportSchema);
  const running = isAlive(keeperPid) && isAlive(worker?.pid);
  return {
    state: running ? "running" : "down",
    ...(keeperPid === undefined ? {} : { keeperPid }),
    ...(worker === undefined ? {} : { workerPid: worker.pid, port: worker.port }),
    ...(report === undefined ? {} : { report }),
  };
}

/** The proxy's port for a cluster, chosen once and kept. */
async function proxyPort(clusterDir: string): Promise<number> {
  const p = supervisorPaths(clusterDir);
  if (existsSync(p.port)) return Number(readFileSync(p.port, "utf8").trim());
  const port = await findFreePort();
  writeFileSync(p.port, `${port}\n`, { mode: 0o600 });
  return port;
}

/** The command line that runs the supervisor's entry point: compiled JavaScript in the package, else TypeScript through tsx's loader. */
export function supervisorEntryArgs(mode: "keeper" | "worker", clusterDir: string, sessionsDir: string): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  // The published package runs dist/, compiled by `npm run build`; a checkout runs its sources.
  const compiled = join(here, "supervisor-main.js");
  if (existsSync(compiled)) return [compiled, mode, clusterDir, sessionsDir];
  const loader = pathToFileURL(join(dirname(createRequire(import.meta.url).resolve("tsx/package.json")), "dist", "loader.mjs")).href;
  return ["--import", loader, join(here, "supervisor-main.ts"), mode, clusterDir, sessionsDir];
}

/**
 * Starts the supervisor of a cluster unless it runs, and waits until its worker listens; returns the proxy's
 * port. The processes are detached: they keep running after the CLI exits and end when the cluster stops.
 */
export async function ensureSupervisor(clusterDir: string, sessionsDir: string, timeoutMs = 15_000): Promise<number> {
  const p = supervisorPaths(clusterDir);
  mkdirSync(p.dir, { recursive: true, mode: 0o700 });
  const port = await proxyPort(clusterDir);
  const now = supervisorState(clusterDir);
  if (now.state === "running" && now.port === port) return port;
  if (!isAlive(now.keeperPid)) {
    const log = openSync(p.log, "a", 0o600);
    const child = spawn(process.execPath, supervisorEntryArgs("keeper", clusterDir, sessionsDir), {
      detached: true,
      stdio: ["ignore", log, log],
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    child.unref();
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = supervisorState(clusterDir);
    if (s.state === "running" && s.port === port) return port;
    await new Promise((r) => setTimeout(r, 50));
  }
  const tail = existsSync(p.log) ? readFileSync(p.log, "utf8").split("\n").slice(-6).join("\n").trim() : "";
  // A worker.json edited by hand reads as "no worker": say so rather than only that it did not start.
  const workerFile = fileProblem(p.worker, workerFileSchema);
  throw new AirlockError(
    "AIRLOCK_SUPERVISOR_DOWN",
    `the staging supervisor did not start within ${Math.round(timeoutMs / 1000)} s${workerFile === "" ? "" : ` (${workerFile})`}${tail === "" ? "" : `:\n${tail}`}`,
    {
      hint: `sessions are handed out only while it runs; see ${p.log}`,
    },
  );
}
