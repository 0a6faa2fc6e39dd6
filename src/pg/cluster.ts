/**
 * The embedded default backend's server: a Postgres cluster Airlock creates
 * and runs itself from the machine's binaries. This file is its lifecycle:
 * creating it (initdb), starting it (recovering from a crash, moving off a
 * port taken meanwhile), stopping it with no server process left behind, and
 * telling whether it runs. Its layout on disk, configuration and opening are
 * in cluster-config.ts (re-exported here).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AirlockError } from "../errors.ts";
import { processAlive } from "../os/processes.ts";
import { findPgBinaries } from "./binaries.ts";
import {
  CLUSTER_SUPERUSER,
  type ClusterFile,
  type ClusterOptions,
  type LocalCluster,
  MAX_SOCKET_PATH,
  buildCluster,
  checkReachable,
  chownToServer,
  findFreePort,
  isPortFree,
  openCluster,
  paths,
  recordPort,
  serverConf,
  serverUserFor,
} from "./cluster-config.ts";
import { redactText } from "./redact.ts";

export { CLUSTER_SUPERUSER, type ClusterOptions, type LocalCluster, findFreePort, openCluster } from "./cluster-config.ts";

/** What `clusterStatus` reports. */
export interface ClusterState {
  readonly state: "absent" | "stopped" | "running";
  readonly pid?: number;
  readonly port?: number;
}

/** Runs a server tool as the server user; rejects with its output (redacted) on failure. */
function runTool(cluster: Pick<LocalCluster, "serverUser" | "dir">, command: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
  const user = cluster.serverUser;
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C.UTF-8", LANG: "C.UTF-8", TZ: "UTC" };
  if (user.switchUser) env.HOME = cluster.dir;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      cwd: cluster.dir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      ...(user.switchUser ? { uid: user.uid, gid: user.gid } : {}),
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(output);
      else reject(Object.assign(new Error(redactText(output.trim()) || `${command} exited with ${code}`), { exitCode: code }));
    });
  });
}

/**
 * Creates a cluster (initdb) in `options.dir`, or opens the one already there.
 * A failed creation removes what it made.
 */
export async function createCluster(options: ClusterOptions): Promise<LocalCluster> {
  const existing = openCluster(options);
  if (existing !== undefined) return existing;
  const p = paths(options.dir);
  const binaries = options.binaries ?? findPgBinaries();
  const serverUser = serverUserFor(options);
  if (join(p.socketDir, ".s.PGSQL.65535.lock").length > MAX_SOCKET_PATH) {
    throw new AirlockError(
      "AIRLOCK_CLUSTER_PATH_TOO_LONG",
      `the cluster directory ${p.dir} is too deep for a Unix socket path (at most ${MAX_SOCKET_PATH} bytes)`,
      {
        hint: "choose a shorter cluster directory (local.clusterDir in airlock.config.ts)",
      },
    );
  }
  if (existsSync(p.dataDir) && readdirSync(p.dataDir).length > 0) {
    throw new AirlockError("AIRLOCK_CLUSTER_DIR_NOT_EMPTY", `${p.dataDir} exists but is not an Airlock cluster`, {
      hint: "remove it, or choose another cluster directory",
    });
  }
  const createdDir = !existsSync(p.dir);
  // The server user passes through to its data directory; nobody lists what is here.
  mkdirSync(p.dir, { recursive: true, mode: 0o711 });
  chmodSync(p.dir, 0o711);
  try {
    checkReachable(p.dir, serverUser);
    for (const d of [p.dataDir, p.socketDir, p.logDir]) {
      mkdirSync(d, { recursive: true, mode: 0o700 });
      chownToServer(d, serverUser);
    }
    const password = randomBytes(24).toString("base64url");
    writeFileSync(p.passwordFile, `${password}\n`, { mode: 0o600 });
    // initdb reads the password from a file the server user can read; it is removed right after.
    const pwfile = join(p.socketDir, "initdb.pw");
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    chownToServer(pwfile, serverUser);
    const stub = { serverUser, dir: p.dir };
    try {
      await runTool(stub, binaries.tool("initdb"), [
        "-D",
        p.dataDir,
        "-U",
        CLUSTER_SUPERUSER,
        `--pwfile=${pwfile}`,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
      ]);
    } catch (e) {
      throw new AirlockError("AIRLOCK_INITDB_FAILED", `initdb failed in ${p.dataDir}: ${(e as Error).message}`, {
        hint: "check that the directory is writable and on a local file system",
        cause: e,
      });
    } finally {
      rmSync(pwfile, { force: true });
    }
    const port = await findFreePort();
    writeFileSync(p.confFile, serverConf(port, p.socketDir, options), { mode: 0o600 });
    chownToServer(p.confFile, serverUser);
    const conf = join(p.dataDir, "postgresql.conf");
    writeFileSync(conf, `${readFileSync(conf, "utf8")}\ninclude = 'airlock.conf'\n`);
    const file: ClusterFile = {
      version: 1,
      port,
      superuser: CLUSTER_SUPERUSER,
      binDir: binaries.dir,
      major: binaries.major,
      createdAt: new Date().toISOString(),
    };
    writeFileSync(p.file, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    return buildCluster(p.dir, file, binaries, serverUser, password);
  } catch (e) {
    // Nothing half-made stays behind: a retry starts clean.
    if (createdDir) rmSync(p.dir, { recursive: true, force: true });
    else for (const f of [p.dataDir, p.socketDir, p.logDir, p.passwordFile, p.file]) rmSync(f, { recursive: true, force: true });
    throw e;
  }
}

/** Postgres processes whose working directory is this cluster's data directory (postmaster and children). */
export function serverProcesses(cluster: Pick<LocalCluster, "dataDir">): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === cluster.dataDir) out.push(Number(entry));
    } catch {
      // Gone, or not ours to inspect.
    }
  }
  return out;
}

function readPidFile(dataDir: string): { pid: number; port: number } | undefined {
  try {
    const lines = readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n");
    const pid = Number(lines[0]);
    const port = Number(lines[3]);
    return Number.isInteger(pid) && pid > 0 ? { pid, port } : undefined;
  } catch {
    return undefined;
  }
}

function isOurPostmaster(cluster: Pick<LocalCluster, "dataDir">, pid: number): boolean {
  if (!processAlive(pid)) return false;
  try {
    return readlinkSync(`/proc/${pid}/cwd`) === cluster.dataDir;
  } catch {
    // Cannot inspect (not Linux): trust pg_ctl's view that it is alive.
    return true;
  }
}

/** Whether the cluster exists and runs. */
export function clusterStatus(cluster: LocalCluster | undefined): ClusterState {
  if (cluster === undefined || !existsSync(join(cluster.dataDir, "PG_VERSION"))) return { state: "absent" };
  const pidFile = readPidFile(cluster.dataDir);
  if (pidFile !== undefined && isOurPostmaster(cluster, pidFile.pid)) return { state: "running", pid: pidFile.pid, port: pidFile.port };
  return { state: "stopped" };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until the given processes are gone; kills them after `graceMs`. */
async function reap(pids: () => number[], graceMs: number): Promise<void> {
  const deadline = Date.now() + graceMs;
  while (pids().length > 0 && Date.now() < deadline) await sleep(50);
  for (const pid of pids()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  const hard = Date.now() + 5_000;
  while (pids().length > 0 && Date.now() < hard) await sleep(50);
}

function logTail(cluster: LocalCluster, lines = 15): string {
  try {
    return redactText(readFileSync(cluster.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n"));
  } catch {
    return "";
  }
}

/**
 * Starts the cluster and waits until it accepts connections. Starting a
 * running cluster is a no-op; a stale pid file left by a crash is recovered;
 * a port taken since the last start is replaced by a free one.
 */
export async function startCluster(cluster: LocalCluster): Promise<{ alreadyRunning: boolean; port: number }> {
  const status = clusterStatus(cluster);
  if (status.state === "absent") {
    throw new AirlockError("AIRLOCK_CLUSTER_ABSENT", `no cluster in ${cluster.dir}`, { hint: "create it first (`airlock cluster start` creates it)" });
  }
  if (status.state === "running") {
    if (status.port !== undefined && status.port > 0) cluster.port = status.port;
    return { alreadyRunning: true, port: cluster.port };
  }
  // A crashed postmaster leaves children that still hold shared memory, and lock files (the pid file, the
  // socket's) naming a pid that may be reused or still be a zombie nobody has reaped, which Postgres would take
  // for a live postmaster: wait for the orphans, then clear them.
  await reap(() => serverProcesses(cluster), 10_000);
  rmSync(join(cluster.dataDir, "postmaster.pid"), { force: true });
  for (const f of readdirSync(cluster.socketDir)) if (/^\.s\.PGSQL\.\d+\.lock$/.test(f)) rmSync(join(cluster.socketDir, f), { force: true });
  for (let attempt = 1; ; attempt++) {
    if (!(await isPortFree(cluster.port))) {
      cluster.port = await findFreePort();
      recordPort(cluster.dir, cluster.port);
    }
    try {
      await runTool(cluster, cluster.binaries.tool("pg_ctl"), ["-D", cluster.dataDir, "-l", cluster.logFile, "-w", "-t", "60", "start"], 90_000);
      return { alreadyRunning: false, port: cluster.port };
    } catch (e) {
      const tail = logTail(cluster);
      // Someone took the port between our check and the bind: try another.
      if (attempt < 3 && /could not bind|Address already in use/i.test(tail)) {
        await reap(() => serverProcesses(cluster), 5_000);
        rmSync(join(cluster.dataDir, "postmaster.pid"), { force: true });
        cluster.port = 0;
        continue;
      }
      await reap(() => serverProcesses(cluster), 5_000);
      throw new AirlockError(
        "AIRLOCK_CLUSTER_START_FAILED",
        `the cluster in ${cluster.dir} did not start: ${(e as Error).message}${tail === "" ? "" : `\n${tail}`}`,
        {
          hint: `read the server log at ${cluster.logFile}`,
          cause: e,
        },
      );
    }
  }
}

/** Stops the cluster (fast shutdown, immediate if that hangs) and leaves no server process behind. */
export async function stopCluster(cluster: LocalCluster): Promise<{ wasRunning: boolean }> {
  const status = clusterStatus(cluster);
  if (status.state !== "running") {
    await reap(() => serverProcesses(cluster), 2_000);
    return { wasRunning: false };
  }
  const pgCtl = cluster.binaries.tool("pg_ctl");
  try {
    await runTool(cluster, pgCtl, ["-D", cluster.dataDir, "-m", "fast", "-w", "-t", "30", "stop"], 40_000);
  } catch {
    await runTool(cluster, pgCtl, ["-D", cluster.dataDir, "-m", "immediate", "-w", "-t", "10", "stop"], 15_000).catch(() => undefined);
  }
  await reap(() => serverProcesses(cluster), 5_000);
  return { wasRunning: true };
}

/** Stops the cluster and deletes its directory. */
export async function destroyCluster(cluster: LocalCluster): Promise<void> {
  await stopCluster(cluster);
  rmSync(cluster.dir, { recursive: true, force: true });
}

/** Creates the cluster if needed and starts it: what most callers want. */
export async function ensureCluster(options: ClusterOptions): Promise<LocalCluster> {
  const cluster = await createCluster(options);
  await startCluster(cluster);
  return cluster;
}
