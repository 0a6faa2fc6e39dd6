/**
 * The embedded default backend's server: a Postgres cluster Airlock creates
 * and runs itself from the machine's binaries. Loopback only, a Unix socket
 * inside its own directory (trust, 0700), scram-sha-256 for TCP, logs beside
 * the data. Layout of a cluster directory:
 *
 *   cluster.json        port, superuser, binaries (no password)
 *   superuser.password  0600, for TCP URLs handed to tools that need one
 *   data/               PGDATA (owned by the server user)
 *   run/                the Unix socket (owned by the server user, 0700)
 *   log/postgres.log    the server log
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { AirlockError } from "../errors.ts";
import { type PgBinaries, findPgBinaries } from "./binaries.ts";
import { type PgTarget, makeTarget } from "./connect.ts";
import { type ServerUser, resolveServerUser } from "./os-user.ts";
import { redactText } from "./redact.ts";

/** The superuser every embedded cluster is created with. */
export const CLUSTER_SUPERUSER = "airlock";

/** Options for creating or opening a cluster. */
export interface ClusterOptions {
  /** The cluster directory (default `.airlock/cluster`). */
  readonly dir: string;
  /** Binaries to use (default: found by findPgBinaries). */
  readonly binaries?: PgBinaries;
  /** Extra server settings written to the cluster's config at creation. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Disposable clusters skip fsync (faster; an OS crash may lose the cluster). Default true. */
  readonly disposable?: boolean;
  /** The OS user the server runs as when Airlock is root (default AIRLOCK_PG_USER, then postgres). */
  readonly serverUser?: string;
}

function serverUserFor(options: ClusterOptions): ServerUser {
  return resolveServerUser(options.serverUser === undefined ? process.env : { ...process.env, AIRLOCK_PG_USER: options.serverUser });
}

/** A cluster on disk; whether it runs is asked of `clusterStatus`. */
export interface LocalCluster {
  readonly dir: string;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  readonly binaries: PgBinaries;
  readonly serverUser: ServerUser;
  /** The TCP port (127.0.0.1) the cluster listens on; may change at start if it was taken. */
  port: number;
  /** A superuser connection over the Unix socket (with the password, for clusters that ask for it there too). */
  adminTarget(database?: string): PgTarget;
  /** A superuser connection over TCP with the password (for child processes like pg_dump). */
  tcpTarget(database?: string): PgTarget;
}

interface ClusterFile {
  readonly version: 1;
  readonly port: number;
  readonly superuser: string;
  readonly binDir: string;
  readonly major: number;
  readonly createdAt: string;
}

/** What `clusterStatus` reports. */
export interface ClusterState {
  readonly state: "absent" | "stopped" | "running";
  readonly pid?: number;
  readonly port?: number;
}

// Unix socket paths are limited to 107 bytes on Linux.
const MAX_SOCKET_PATH = 107;

function paths(dir: string) {
  const abs = resolve(dir);
  return {
    dir: abs,
    file: join(abs, "cluster.json"),
    passwordFile: join(abs, "superuser.password"),
    dataDir: join(abs, "data"),
    socketDir: join(abs, "run"),
    logDir: join(abs, "log"),
    logFile: join(abs, "log", "postgres.log"),
    confFile: join(abs, "data", "airlock.conf"),
  };
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

/** A free TCP port on 127.0.0.1 (the kernel picks one). */
export function findFreePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePromise(port));
    });
  });
}

function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolvePromise(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolvePromise(true)));
  });
}

function chownToServer(path: string, user: ServerUser): void {
  if (user.switchUser) chownSync(path, user.uid, user.gid);
}

/** Fails early when the server user could not reach the cluster directory (a 0700 parent owned by root). */
function checkReachable(dir: string, user: ServerUser): void {
  if (!user.switchUser) return;
  for (let p = dirname(dir); ; p = dirname(p)) {
    const st = statSync(p);
    const canEnter = st.uid === user.uid ? (st.mode & 0o100) !== 0 : st.gid === user.gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (!canEnter) {
      throw new AirlockError("AIRLOCK_CLUSTER_DIR_UNREACHABLE", `the server user "${user.name}" cannot enter ${p}, a parent of the cluster directory ${dir}`, {
        hint: `allow it to pass through (\`chmod o+x ${p}\`) or put the cluster elsewhere (local.clusterDir in airlock.config.ts)`,
      });
    }
    if (p === dirname(p)) return;
  }
}

function serverConf(port: number, socketDir: string, options: ClusterOptions): string {
  const settings: Record<string, string | number | boolean> = {
    listen_addresses: "127.0.0.1",
    port,
    unix_socket_directories: socketDir,
    unix_socket_permissions: "0700",
    password_encryption: "scram-sha-256",
    max_connections: 200,
    // Statements could carry production values or passwords: never log them.
    log_statement: "none",
    log_min_duration_statement: -1,
    log_min_error_statement: "panic",
    log_connections: false,
    log_disconnections: false,
    // A disposable cluster may lose data on an OS crash, never on a server crash:
    // commits still reach the OS (synchronous_commit stays on), they just skip fsync.
    ...(options.disposable ?? true ? { fsync: false, full_page_writes: false } : {}),
    ...options.settings,
  };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${typeof v === "string" ? `'${v.replace(/'/g, "''")}'` : v === true ? "on" : v === false ? "off" : v}`);
  return `# Written by Airlock; edits are kept until the port must change.\n${lines.join("\n")}\n`;
}

function writePortToConf(confFile: string, port: number): void {
  const conf = readFileSync(confFile, "utf8").replace(/^port = \d+$/m, `port = ${port}`);
  writeFileSync(confFile, conf);
}

function buildCluster(dir: string, file: ClusterFile, binaries: PgBinaries, serverUser: ServerUser, password: string): LocalCluster {
  const p = paths(dir);
  const cluster: LocalCluster = {
    dir: p.dir,
    dataDir: p.dataDir,
    socketDir: p.socketDir,
    logFile: p.logFile,
    binaries,
    serverUser,
    port: file.port,
    // With the password: the staging cluster asks for it even on its socket (src/staging/local-backend.ts).
    adminTarget: (database = "postgres") => makeTarget({ host: p.socketDir, port: cluster.port, database, user: file.superuser, password }),
    tcpTarget: (database = "postgres") => makeTarget({ host: "127.0.0.1", port: cluster.port, database, user: file.superuser, password }),
  };
  return cluster;
}

function readClusterFile(dir: string): ClusterFile | undefined {
  const p = paths(dir);
  if (!existsSync(p.file) || !existsSync(join(p.dataDir, "PG_VERSION"))) return undefined;
  return JSON.parse(readFileSync(p.file, "utf8")) as ClusterFile;
}

/** Opens an existing cluster directory, or returns undefined when none is there. */
export function openCluster(options: ClusterOptions): LocalCluster | undefined {
  const p = paths(options.dir);
  const file = readClusterFile(p.dir);
  if (file === undefined) return undefined;
  const binaries = options.binaries ?? findPgBinaries();
  if (binaries.major !== file.major) {
    throw new AirlockError("AIRLOCK_PG_VERSION_MISMATCH", `the cluster in ${p.dir} was created by Postgres ${file.major}, but the binaries found are ${binaries.major} (${binaries.dir})`, {
      hint: `set AIRLOCK_PG_BIN to a Postgres ${file.major} bin directory, or destroy the cluster (\`airlock cluster destroy\`) to recreate it`,
    });
  }
  const password = readFileSync(p.passwordFile, "utf8").trim();
  return buildCluster(p.dir, file, binaries, serverUserFor(options), password);
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
    throw new AirlockError("AIRLOCK_CLUSTER_PATH_TOO_LONG", `the cluster directory ${p.dir} is too deep for a Unix socket path (at most ${MAX_SOCKET_PATH} bytes)`, {
      hint: "choose a shorter cluster directory (local.clusterDir in airlock.config.ts)",
    });
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
        "-D", p.dataDir, "-U", CLUSTER_SUPERUSER, `--pwfile=${pwfile}`, "--auth-local=trust", "--auth-host=scram-sha-256",
        "-E", "UTF8", "--locale=C", "--no-sync",
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
    const file: ClusterFile = { version: 1, port, superuser: CLUSTER_SUPERUSER, binDir: binaries.dir, major: binaries.major, createdAt: new Date().toISOString() };
    writeFileSync(p.file, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
    return buildCluster(p.dir, file, binaries, serverUser, password);
  } catch (e) {
    // Nothing half-made stays behind: a retry starts clean.
    if (createdDir) rmSync(p.dir, { recursive: true, force: true });
    else for (const f of [p.dataDir, p.socketDir, p.logDir, p.passwordFile, p.file]) rmSync(f, { recursive: true, force: true });
    throw e;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
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
  if (!isAlive(pid)) return false;
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
  // A crashed postmaster leaves children that still hold shared memory and a
  // pid file that may name a reused pid: wait for the orphans, then clear it.
  await reap(() => serverProcesses(cluster), 10_000);
  rmSync(join(cluster.dataDir, "postmaster.pid"), { force: true });
  const p = paths(cluster.dir);
  for (let attempt = 1; ; attempt++) {
    if (!(await isPortFree(cluster.port))) {
      cluster.port = await findFreePort();
      writePortToConf(p.confFile, cluster.port);
      const file = JSON.parse(readFileSync(p.file, "utf8")) as ClusterFile;
      writeFileSync(p.file, `${JSON.stringify({ ...file, port: cluster.port }, null, 2)}\n`);
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
      throw new AirlockError("AIRLOCK_CLUSTER_START_FAILED", `the cluster in ${cluster.dir} did not start: ${(e as Error).message}${tail === "" ? "" : `\n${tail}`}`, {
        hint: `read the server log at ${cluster.logFile}`,
        cause: e,
      });
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
