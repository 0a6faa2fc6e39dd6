/**
 * An embedded cluster's configuration: its directory, what it was created
 * with (cluster.json), the server settings Airlock writes (airlock.conf), the
 * port it listens on, and opening one that exists. Its lifecycle (initdb,
 * start, stop, status) is in cluster.ts. Loopback only, a Unix socket
 * inside its own directory (trust, 0700), scram-sha-256 for TCP, logs beside
 * the data. Layout of a cluster directory:
 *
 *   cluster.json        port, superuser, binaries (no password)
 *   superuser.password  0600, for TCP URLs handed to tools that need one
 *   data/               PGDATA (owned by the server user)
 *   run/                the Unix socket (owned by the server user, 0700)
 *   log/postgres.log    the server log
 */
import { chownSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import { z } from "zod";
import { readStateFile } from "../config/state-file.ts";
import { AirlockError } from "../errors.ts";
import { type PgBinaries, clusterPgBinaries } from "./binaries.ts";
import { type PgTarget, makeTarget } from "./connect.ts";
import { type ServerUser, resolveServerUser } from "./os-user.ts";

/** The superuser every embedded cluster is created with. */
export const CLUSTER_SUPERUSER = "airlock";

/** Options for creating or opening a cluster. */
export interface ClusterOptions {
  /** The cluster directory (default `.airlock/cluster`). */
  readonly dir: string;
  /** Binaries to use (default: a new cluster findPgBinaries, an existing one clusterPgBinaries, those it was made with). */
  readonly binaries?: PgBinaries;
  /** Extra server settings written to the cluster's config at creation. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Disposable clusters skip fsync (faster; an OS crash may lose the cluster). Default true. */
  readonly disposable?: boolean;
  /** The OS user the server runs as when Airlock is root (default AIRLOCK_PG_USER, then postgres). */
  readonly serverUser?: string;
}

/** The OS user the server runs as, for these options. */
export function serverUserFor(options: ClusterOptions): ServerUser {
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

/** cluster.json: what a cluster was created with. */
export interface ClusterFile {
  readonly version: 1;
  readonly port: number;
  readonly superuser: string;
  readonly binDir: string;
  readonly major: number;
  readonly createdAt: string;
}

/** What cluster.json is checked against when read. */
export const clusterFileSchema: z.ZodType<ClusterFile> = z.object({
  version: z.literal(1),
  port: z.int().min(0).max(65_535),
  superuser: z.string().min(1),
  binDir: z.string(),
  major: z.int(),
  createdAt: z.string(),
});

/** cluster.json, checked (AIRLOCK_STATE_INVALID naming the field when it was edited or damaged). */
function readClusterJson(file: string, dir: string): ClusterFile {
  // Not `airlock cluster destroy`: it opens the cluster, so it reads this file too.
  return readStateFile(file, clusterFileSchema, {
    hint: `restore it as Airlock wrote it (port, superuser, binDir, major), or stop the server and remove ${dir} to start afresh (every staging session in it is lost)`,
  });
}

// Unix socket paths are limited to 107 bytes on Linux.
export const MAX_SOCKET_PATH = 107;

/** Where everything of a cluster lives (see the layout above). */
export function paths(dir: string) {
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

/** Whether nothing listens on this port of 127.0.0.1. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolvePromise(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolvePromise(true)));
  });
}

/** Gives a path to the server user (when the server runs as another user). */
export function chownToServer(path: string, user: ServerUser): void {
  if (user.switchUser) chownSync(path, user.uid, user.gid);
}

/** Fails early when the server user could not reach the cluster directory (a 0700 parent owned by root). */
export function checkReachable(dir: string, user: ServerUser): void {
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

/** airlock.conf: the server settings Airlock writes (loopback, its socket, no statement logging, the caller's settings). */
export function serverConf(port: number, socketDir: string, options: ClusterOptions): string {
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
    ...((options.disposable ?? true) ? { fsync: false, full_page_writes: false } : {}),
    ...options.settings,
  };
  const lines = Object.entries(settings).map(
    ([k, v]) => `${k} = ${typeof v === "string" ? `'${v.replace(/'/g, "''")}'` : v === true ? "on" : v === false ? "off" : v}`,
  );
  return `# Written by Airlock; edits are kept until the port must change.\n${lines.join("\n")}\n`;
}

/** Moves the cluster to another port: in airlock.conf and in cluster.json. */
export function recordPort(dir: string, port: number): void {
  const p = paths(dir);
  writeFileSync(p.confFile, readFileSync(p.confFile, "utf8").replace(/^port = \d+$/m, `port = ${port}`));
  const file = readClusterJson(p.file, p.dir);
  writeFileSync(p.file, `${JSON.stringify({ ...file, port }, null, 2)}\n`);
}

/** The cluster object for a directory, its cluster.json and its superuser's password. */
export function buildCluster(dir: string, file: ClusterFile, binaries: PgBinaries, serverUser: ServerUser, password: string): LocalCluster {
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
  return readClusterJson(p.file, p.dir);
}

/** Opens an existing cluster directory, or returns undefined when none is there. */
export function openCluster(options: ClusterOptions): LocalCluster | undefined {
  const p = paths(options.dir);
  const file = readClusterFile(p.dir);
  if (file === undefined) return undefined;
  // A process that opens the cluster without the project's config (its supervisor) runs the binaries it was made with.
  const binaries = options.binaries ?? clusterPgBinaries(file.binDir, file.major);
  if (binaries.major !== file.major) {
    throw new AirlockError(
      "AIRLOCK_PG_VERSION_MISMATCH",
      `the cluster in ${p.dir} was created by Postgres ${file.major}, but the binaries found are ${binaries.major} (${binaries.dir})`,
      {
        hint: `set AIRLOCK_PG_BIN to a Postgres ${file.major} bin directory, or destroy the cluster (\`airlock cluster destroy\`) to recreate it`,
      },
    );
  }
  const password = readFileSync(p.passwordFile, "utf8").trim();
  return buildCluster(p.dir, file, binaries, serverUserFor(options), password);
}
