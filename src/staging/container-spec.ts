/**
 * The session container, as one pure description: what image it runs, its
 * command, environment, uploaded scripts, snapshot mount, health check,
 * limits, labels, network and port. Two drivers apply it: the Pulumi program
 * in infra/ (`@pulumi/docker`) and the docker backend (the Engine API). Both
 * read this spec and nothing else, so the container a user gets from
 * `pulumi up` is the one the tests start on a real engine.
 */
import { CONTAINER_DATA, restoreFiles } from "./container-entrypoint.ts";
import { CONTAINER_PATHS, type ContainerFile, type RestoreOptions } from "./container-restore.ts";

/** The environment variables that carry the passwords; each driver supplies their values as secrets. */
export const ADMIN_PASSWORD_ENV = "AIRLOCK_ADMIN_PASSWORD";
export const AGENT_PASSWORD_ENV = "AIRLOCK_AGENT_PASSWORD";

/** Labels every session container (and its network) carries. */
export const LABELS = {
  session: "airlock.session",
  expires: "airlock.expires",
  snapshot: "airlock.snapshot",
  project: "airlock.project",
} as const;

/**
 * The driver options of a bridge-mode session's own network: nothing leaves it (no masquerade: no route out), no
 * container on it talks to another, and anything published on it binds loopback by default.
 */
export const BRIDGE_OPTIONS: Readonly<Record<string, string>> = {
  "com.docker.network.bridge.enable_icc": "false",
  "com.docker.network.bridge.enable_ip_masquerade": "false",
  "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
};

/** The value of `NAME=value` in a container's environment list, or undefined. */
export function envValue(envs: readonly string[] | undefined, name: string): string | undefined {
  return (envs ?? []).find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** How the container reaches the host's loopback. */
export type NetworkMode = "host" | "bridge";

/** What a session container is made from. */
export interface SessionContainerInput {
  readonly session: string;
  /** Absolute path of the snapshot directory on the engine's host. */
  readonly snapshotDir: string;
  readonly image: string;
  readonly memoryMb: number;
  readonly cpus: number;
  /** CONNECTION LIMIT of the agent's role. */
  readonly connectionLimit: number;
  /** The agent role's statement_timeout, as Postgres reads it ("5min", "300000ms"). */
  readonly statementTimeout: string;
  /**
   * Bytes the work database may hold before the agent is stopped (and each temporary file); undefined: measured by
   * the container after its restore (four times the restored database, at least 1 GiB).
   */
  readonly diskQuotaBytes: number | undefined;
  /** `host`: Postgres listens on 127.0.0.1:`port` of the host; `bridge`: on its own network, published on 127.0.0.1:`port` (0: the engine picks). */
  readonly network: NetworkMode;
  readonly port: number;
  /** ISO time, or "never". */
  readonly expiresAt: string;
  /** Which project the session belongs to (gc removes only its own), or "" when unknown. */
  readonly project: string;
  readonly readyTimeoutSeconds: number;
  /** The restore: the snapshot's manifest and schema (container-restore.ts). */
  readonly restore: Omit<RestoreOptions, "maxConnections" | "statementTimeout" | "paths">;
}

/** A bind mount from the engine's host. */
export interface ContainerMount {
  readonly hostPath: string;
  readonly containerPath: string;
  readonly readOnly: boolean;
}

/** The session container. Sizes are in bytes, times in seconds. */
export interface ContainerSpec {
  /** Container name, and the network's in bridge mode. */
  readonly name: string;
  readonly image: string;
  readonly entrypoint: readonly string[];
  readonly command: readonly string[];
  /** Plain environment, in order. */
  readonly env: ReadonlyArray<{ readonly name: string; readonly value: string }>;
  /** Environment whose values are secrets the driver supplies (the passwords), in order. */
  readonly secretEnv: readonly string[];
  readonly uploads: readonly ContainerFile[];
  readonly mounts: readonly ContainerMount[];
  readonly healthcheck: {
    readonly test: readonly string[];
    readonly intervalSeconds: number;
    readonly timeoutSeconds: number;
    readonly retries: number;
    readonly startPeriodSeconds: number;
  };
  readonly memoryBytes: number;
  /** Memory plus swap: equal to memoryBytes, so no swap. */
  readonly memorySwapBytes: number;
  readonly nanoCpus: number;
  readonly shmSizeBytes: number;
  /** In a fixed order: session, expires, snapshot, project. */
  readonly labels: ReadonlyArray<{ readonly label: string; readonly value: string }>;
  readonly network: NetworkMode;
  /** Where Postgres is reached from the host: 127.0.0.1:host (0 in bridge mode: the engine picks). */
  readonly port: { readonly container: number; readonly host: number; readonly hostIp: "127.0.0.1" };
  readonly securityOpts: readonly string[];
  /** A tiny init (the engine's docker-init) as PID 1: reaps, forwards signals. */
  readonly init: boolean;
  readonly restart: "unless-stopped";
  readonly stopGraceSeconds: number;
}

const MB = 1024 * 1024;
const DURATION_UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** A Postgres duration as a role setting takes it: "5min", "300000ms", or a bare number (ms). */
export const PG_DURATION = /^(\d+)\s*(us|ms|s|min|h|d)?$/;

/** A Postgres duration in whole milliseconds. */
export function pgDurationMs(text: string): number {
  const m = PG_DURATION.exec(text.trim());
  if (m === null) throw new Error(`"${text}" is not a Postgres duration such as 5min or 300000ms`);
  return Math.max(1, Math.round(Number(m[1]) * DURATION_UNIT_MS[m[2] ?? "ms"]!));
}

/** Server memory settings sized from the container's limit (MB): a quarter for shared buffers, work_mem shared by the connections. */
export function memorySettings(
  memoryMb: number,
  maxConnections: number,
): Record<"shared_buffers" | "work_mem" | "maintenance_work_mem" | "effective_cache_size", string> {
  const shared = Math.max(16, Math.floor(memoryMb / 4));
  return {
    shared_buffers: `${shared}MB`,
    // What remains after shared buffers, halved for safety, over the connections: a sort per connection cannot exhaust it.
    work_mem: `${Math.max(1024, Math.floor(((memoryMb - shared) * 1024) / 2 / maxConnections))}kB`,
    maintenance_work_mem: `${Math.max(16, Math.floor(memoryMb / 16))}MB`,
    effective_cache_size: `${Math.max(32, Math.floor(memoryMb / 2))}MB`,
  };
}

/** How long a connection may take to authenticate before the server drops it. */
export const AUTHENTICATION_TIMEOUT_SECONDS = 5;

/** The session container for `input`. Pure: same input, same spec. */
export function sessionContainerSpec(input: SessionContainerInput): ContainerSpec {
  const name = `airlock-${input.session}`;
  const maxConnections = Math.max(100, input.connectionLimit + 20);
  const listenPort = input.network === "host" ? input.port : 5432;
  const settings = memorySettings(input.memoryMb, maxConnections);
  const paths = CONTAINER_PATHS;
  const uploads = restoreFiles({
    ...input.restore,
    maxConnections: input.connectionLimit,
    statementTimeout: input.statementTimeout,
  });
  return {
    name,
    image: input.image,
    entrypoint: [`${paths.scripts}/entrypoint.sh`],
    command: [
      "postgres",
      "-c",
      `listen_addresses=${input.network === "host" ? "127.0.0.1" : "*"}`,
      "-c",
      `port=${listenPort}`,
      "-c",
      `max_connections=${maxConnections}`,
      ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`]),
      "-c",
      "log_statement=none",
      // A connection that stalls before authenticating holds a server process this long at most (default 60 s): an
      // agent opening hundreds of them locks Airlock's own connections out only that long, as on the local cluster.
      "-c",
      `authentication_timeout=${AUTHENTICATION_TIMEOUT_SECONDS}s`,
    ],
    env: [
      { name: "PGDATA", value: CONTAINER_DATA },
      { name: "AIRLOCK_PORT", value: String(listenPort) },
      { name: "AIRLOCK_DISK_QUOTA_BYTES", value: input.diskQuotaBytes === undefined ? "measure" : String(Math.trunc(input.diskQuotaBytes)) },
      { name: "AIRLOCK_STATEMENT_TIMEOUT_MS", value: String(pgDurationMs(input.statementTimeout)) },
      { name: "LANG", value: "C.UTF-8" },
    ],
    secretEnv: [ADMIN_PASSWORD_ENV, AGENT_PASSWORD_ENV],
    uploads,
    mounts: [{ hostPath: input.snapshotDir, containerPath: paths.snapshotMount, readOnly: true }],
    healthcheck: {
      // The ready mark is written once the restore is complete; TCP answers only after it.
      test: ["CMD-SHELL", `test -f "$PGDATA/airlock-ready" && pg_isready -q -h 127.0.0.1 -p "$AIRLOCK_PORT"`],
      intervalSeconds: 1,
      timeoutSeconds: 5,
      retries: 5,
      startPeriodSeconds: input.readyTimeoutSeconds,
    },
    memoryBytes: input.memoryMb * MB,
    memorySwapBytes: input.memoryMb * MB,
    nanoCpus: Math.round(input.cpus * 1e9),
    shmSizeBytes: Math.max(64, Math.floor(input.memoryMb / 4)) * MB,
    labels: [
      { label: LABELS.session, value: input.session },
      { label: LABELS.expires, value: input.expiresAt },
      { label: LABELS.snapshot, value: input.restore.manifest.id },
      { label: LABELS.project, value: input.project },
    ],
    network: input.network,
    port: { container: listenPort, host: input.port, hostIp: "127.0.0.1" },
    securityOpts: ["no-new-privileges:true"],
    init: true,
    restart: "unless-stopped",
    stopGraceSeconds: 10,
  };
}
