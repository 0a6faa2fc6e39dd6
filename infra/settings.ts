/**
 * The session stack's configuration (namespace `airlock`), read once and
 * checked as a whole: every problem is reported at once, before any resource
 * is declared. Passwords are not here: they are secrets and stay Outputs.
 */
import { isAbsolute, join, resolve } from "node:path";
import { PG_DURATION } from "../src/staging/container-spec.ts";

/** What the program needs from `pulumi.Config` (kept small so tests can pass a plain object). */
export interface ConfigSource {
  get(key: string): string | undefined;
}

/** The checked settings of one session stack. */
export interface StackSettings {
  /** The session name: labels, container and network names. */
  readonly session: string;
  /** The snapshot id; must match the snapshot's manifest. */
  readonly snapshot: string;
  /** Absolute path of the snapshot directory on the Docker host. */
  readonly snapshotDir: string;
  /** A Postgres image pinned by exact tag or by digest. */
  readonly image: string;
  readonly memoryMb: number;
  readonly cpus: number;
  /** CONNECTION LIMIT of the agent's role. */
  readonly maxConnections: number;
  /** Role-level statement_timeout, as Postgres reads it ("5min", "300000ms"). */
  readonly statementTimeout: string;
  /** Session lifetime in ms, or null: kept until destroyed. */
  readonly ttlMs: number | null;
  /** A fixed expiry (ISO time) set by the caller, "never", or null: computed from ttl. */
  readonly expiresAt: string | null;
  /** Host port on 127.0.0.1; 0: Docker picks a free one. */
  readonly port: number;
  /** How long `pulumi up` waits for the restored database to become healthy, in seconds. */
  readonly readyTimeoutSeconds: number;
  /** `bridge`: its own network, the port published on 127.0.0.1; `host`: Postgres binds 127.0.0.1:port of the host (port required). */
  readonly network: "host" | "bridge";
  /** Bytes the work database may hold before the agent is stopped; undefined: the container measures it after its restore. */
  readonly diskQuotaBytes: number | undefined;
  /** The project label (gc of the docker backend removes only its own project's containers). */
  readonly project: string;
}

/** The default image: the Postgres major the demo and tests capture from, pinned by exact tag. */
export const DEFAULT_IMAGE = "postgres:15.10-bookworm";

/** Config keys the program reads (namespace `airlock`); anything else under the namespace is refused. */
export const CONFIG_KEYS = [
  "session",
  "snapshot",
  "snapshotDir",
  "image",
  "memoryMb",
  "cpus",
  "maxConnections",
  "statementTimeout",
  "ttl",
  "expiresAt",
  "port",
  "readyTimeout",
  "adminPassword",
  "agentPassword",
  "network",
  "diskQuota",
  "project",
] as const;

// Docker object names: [a-zA-Z0-9][a-zA-Z0-9_.-]*; the session also ends up in labels and URLs.
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;
const REPOSITORY = /^[a-z0-9][a-z0-9._\/:-]*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[a-z0-9][a-z0-9._\/:-]*@sha256:[0-9a-f]{64}$/;
const TTL = /^(?<n>\d+)\s*(?<unit>ms|s|m|min|h|d)$/;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Why an image reference is not pinned, or null when it is. Pinned means a
 * digest (`…@sha256:…`) or an exact tag; `latest` and bare major tags like
 * `15` float, so they are refused.
 */
export function imagePinProblem(image: string): string | null {
  if (DIGEST.test(image)) return null;
  const colon = image.lastIndexOf(":");
  const name = colon > image.lastIndexOf("/") ? image.slice(0, colon) : image;
  const tag = colon > image.lastIndexOf("/") ? image.slice(colon + 1) : undefined;
  if (!REPOSITORY.test(name) || tag === undefined || !TAG.test(tag)) return `"${image}" is neither name:tag nor name@sha256:<digest>`;
  if (tag === "latest") return `"${image}" floats (latest); pin an exact version such as ${DEFAULT_IMAGE}`;
  // A tag that ends in a content hash (`airlock image build`: airlock-postgres:15-<sha256 prefix>) is pinned by it.
  if (/-[0-9a-f]{12,64}$/.test(tag)) return null;
  // A tag without a minor version ("15", "15-bookworm", "alpine") moves with every release.
  if (!/^\d+\.\d+/.test(tag)) return `"${image}" floats (tag ${tag}); pin an exact version such as ${DEFAULT_IMAGE}, or a digest`;
  return null;
}

/** A TTL ("2h", "30m", "90s", "1d") in ms; "never", "none" or "0" mean no expiry (null). */
export function parseTtl(text: string): number | null | undefined {
  const t = text.trim();
  if (t === "never" || t === "none" || t === "0") return null;
  const m = TTL.exec(t);
  if (m?.groups === undefined) return undefined;
  const ms = Number(m.groups.n) * (UNIT_MS[m.groups.unit ?? ""] ?? Number.NaN);
  return Number.isSafeInteger(ms) && ms > 0 ? ms : undefined;
}

/** The error thrown for bad stack configuration: one message listing every problem. */
export class StackConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`the airlock stack configuration has ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "StackConfigError";
  }
}

/**
 * Reads and checks the stack configuration. `stack` is the stack name (the
 * default session), `cwd` the directory relative paths start from.
 * `configuredKeys` (the namespace's keys, when known) lets unknown keys be refused.
 */
export function readSettings(config: ConfigSource, stack: string, cwd: string, configuredKeys?: readonly string[]): StackSettings {
  const problems: string[] = [];
  const known = new Set<string>(CONFIG_KEYS);
  for (const key of configuredKeys ?? []) if (!known.has(key)) problems.push(`airlock:${key} is not a setting (known: ${CONFIG_KEYS.join(", ")})`);

  const integer = (key: string, fallback: number, min: number, max: number): number => {
    const raw = config.get(key);
    if (raw === undefined || raw.trim() === "") return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`airlock:${key} must be a whole number from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return n;
  };

  const session = config.get("session") ?? stack;
  if (!NAME.test(session)) problems.push(`airlock:session "${session}" must be letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)`);

  const snapshot = config.get("snapshot");
  if (snapshot === undefined || snapshot === "")
    problems.push("airlock:snapshot is required: the id of the snapshot to restore (`pulumi config set airlock:snapshot snap-…`)");
  else if (!NAME.test(snapshot)) problems.push(`airlock:snapshot "${snapshot}" is not a snapshot id`);
  const snapshotId = snapshot ?? "";

  const dirRaw = config.get("snapshotDir");
  const snapshotDir =
    dirRaw === undefined || dirRaw === ""
      ? resolve(cwd, ".airlock", "snapshots", snapshotId)
      : isAbsolute(dirRaw)
        ? resolve(dirRaw)
        : resolve(join(cwd, dirRaw));

  const image = config.get("image") ?? DEFAULT_IMAGE;
  const pin = imagePinProblem(image);
  if (pin !== null) problems.push(`airlock:image ${pin}`);

  const memoryMb = integer("memoryMb", 1024, 128, 1_048_576);
  const maxConnections = integer("maxConnections", 20, 1, 1_000);
  const port = integer("port", 0, 0, 65_535);
  const readyTimeoutSeconds = integer("readyTimeout", 600, 10, 86_400);

  const cpusRaw = config.get("cpus");
  let cpus = 1;
  if (cpusRaw !== undefined && cpusRaw.trim() !== "") {
    const n = Number(cpusRaw);
    if (!Number.isFinite(n) || n <= 0 || n > 1_024) problems.push(`airlock:cpus must be a number of CPUs greater than 0, such as 1 or 0.5 (got "${cpusRaw}")`);
    else cpus = n;
  }

  const statementTimeout = (config.get("statementTimeout") ?? "5min").trim();
  if (!PG_DURATION.test(statementTimeout))
    problems.push(`airlock:statementTimeout must be a Postgres duration such as 5min, 30s or 300000ms (got "${statementTimeout}")`);

  const ttlRaw = config.get("ttl") ?? "2h";
  const ttl = parseTtl(ttlRaw);
  if (ttl === undefined) problems.push(`airlock:ttl must be a duration such as 2h, 30m or 1d, or "never" (got "${ttlRaw}")`);

  const expiresRaw = config.get("expiresAt");
  let expiresAt: string | null = null;
  if (expiresRaw !== undefined && expiresRaw !== "") {
    if (expiresRaw === "never") expiresAt = "never";
    else if (/^\d{4}-\d\d-\d\dT/.test(expiresRaw) && !Number.isNaN(Date.parse(expiresRaw))) expiresAt = new Date(expiresRaw).toISOString();
    else problems.push(`airlock:expiresAt must be an ISO time or "never" (got "${expiresRaw}")`);
  }

  const network = config.get("network") ?? "bridge";
  if (network !== "bridge" && network !== "host") problems.push(`airlock:network must be bridge or host (got "${network}")`);
  else if (network === "host" && port === 0)
    problems.push("airlock:port is required with airlock:network host: Postgres binds 127.0.0.1:<port> of the host itself");
  const quotaRaw = config.get("diskQuota");
  const diskQuotaBytes = quotaRaw === undefined || quotaRaw.trim() === "" ? undefined : integer("diskQuota", 0, 1024 * 1024, Number.MAX_SAFE_INTEGER);
  const project = config.get("project") ?? "";
  if (project !== "" && !/^[0-9a-z-]{1,64}$/.test(project)) problems.push(`airlock:project must be letters, digits or '-' (got "${project}")`);

  if (problems.length > 0) throw new StackConfigError(problems);
  return {
    session,
    snapshot: snapshotId,
    snapshotDir,
    image,
    memoryMb,
    cpus,
    maxConnections,
    statementTimeout,
    ttlMs: ttl ?? null,
    expiresAt,
    port,
    readyTimeoutSeconds,
    network: network === "host" ? "host" : "bridge",
    diskQuotaBytes,
    project,
  };
}
