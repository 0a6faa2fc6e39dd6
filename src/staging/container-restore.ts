/**
 * What the staging container runs to restore a snapshot, generated from the
 * snapshot's manifest when the program runs (the image has no jq and no
 * Node): a root entrypoint that checks and stages the read-only snapshot, an
 * init script the image's own entrypoint runs once, and the SQL it feeds to
 * psql. Same order, checks and statements as the local restore
 * (src/snapshot/restore.ts, src/snapshot/restore-sql.ts): checksums,
 * pre-data, COPY … WITH (FREEZE) per table, sequence values, post-data, one
 * transaction. No password is in any of these files: the agent's comes from
 * the container's (secret) environment. From src/ it takes only the
 * snapshot's format, the SQL both restores share and the staging names
 * (test/layers.test.ts keeps the capture and its masking code out of the
 * program).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";
import { MANIFEST_FILE, SCHEMA_FILE, schemaSections } from "../snapshot/format.ts";
import { copyInSql, setvalSql } from "../snapshot/restore-sql.ts";
import type { SnapshotManifest } from "../snapshot/store.ts";
import { AGENT_ROLE, BASE_DB, WORK_DB } from "./container-names.ts";
import { handOverQuery } from "./roles.ts";

/** Where things are inside the container. */
export interface ContainerPaths {
  /** The snapshot directory, bind-mounted read-only. */
  readonly snapshotMount: string;
  /** The snapshot as the postgres user reads it: a link to the mount, or a private copy. */
  readonly staged: string;
  /** The uploaded scripts. */
  readonly scripts: string;
  /** The hook the image's entrypoint runs on first start. */
  readonly initHook: string;
}

export const CONTAINER_PATHS: ContainerPaths = {
  snapshotMount: "/airlock/snapshot",
  staged: "/var/lib/postgresql/airlock-snapshot",
  scripts: "/airlock/scripts",
  initHook: "/docker-entrypoint-initdb.d/50-airlock.sh",
};

/** One file uploaded into the container before it starts. */
export interface ContainerFile {
  readonly path: string;
  readonly content: string;
  readonly executable: boolean;
}

/** The part of a manifest the restore needs. */
export type RestoreManifest = Pick<SnapshotManifest, "id" | "sequences" | "files" | "catalog"> & {
  readonly tables: ReadonlyArray<{
    readonly schema: string;
    readonly name: string;
    readonly columns: ReadonlyArray<{ readonly name: string }>;
    readonly file: string;
    readonly rows?: number;
  }>;
};

/** A snapshot that cannot be restored as it is (missing, corrupt, or not the configured one). */
export class SnapshotFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SnapshotFileError";
  }
}

const SHA256 = /^[0-9a-f]{64}$/;

/** Quotes a word for sh. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Why a data file path from a manifest is unsafe to hand to sh and sha256sum, or null. */
function unsafePath(file: string): string | null {
  if (file === "" || file.startsWith("/")) return "is not a relative path";
  if (/[\n\r\\\0]/.test(file)) return "holds a newline, backslash or NUL";
  if (file.split("/").some((part) => part === ".." || part === "." || part === "")) return "is not a plain path inside the snapshot";
  return null;
}

/** Checks the shape of a parsed manifest.json; returns it typed, or throws with every problem. */
export function checkManifest(raw: unknown, expectedId: string): RestoreManifest {
  const problems: string[] = [];
  const m = raw as Partial<RestoreManifest> | null;
  if (m === null || typeof m !== "object") throw new SnapshotFileError("manifest.json is not a JSON object");
  if (m.id !== expectedId) problems.push(`manifest.json is snapshot ${String(m.id)}, but airlock:snapshot is ${expectedId}`);
  const files = m.files !== null && typeof m.files === "object" ? m.files : undefined;
  if (files === undefined) problems.push("manifest.json has no files map");
  if (!Array.isArray(m.tables)) problems.push("manifest.json has no tables list");
  if (!Array.isArray(m.sequences)) problems.push("manifest.json has no sequences list");
  for (const t of Array.isArray(m.tables) ? m.tables : []) {
    const name = `${String(t?.schema)}.${String(t?.name)}`;
    if (typeof t?.schema !== "string" || typeof t.name !== "string") problems.push(`a table has no schema or name (${name})`);
    if (!Array.isArray(t?.columns) || t.columns.length === 0 || t.columns.some((c: { name?: unknown } | null) => typeof c?.name !== "string"))
      problems.push(`table ${name} has no column list`);
    if (typeof t?.file !== "string") {
      problems.push(`table ${name} has no data file`);
      continue;
    }
    const unsafe = unsafePath(t.file);
    if (unsafe !== null) problems.push(`the data file of ${name} ${unsafe}: ${JSON.stringify(t.file)}`);
    const hash = files?.[t.file];
    if (typeof hash !== "string" || !SHA256.test(hash)) problems.push(`the data file of ${name} (${t.file}) has no sha256 in the manifest`);
  }
  for (const s of Array.isArray(m.sequences) ? m.sequences : []) {
    if (typeof s?.schema !== "string" || typeof s.name !== "string" || typeof s.isCalled !== "boolean" || !/^-?\d{1,19}$/.test(String(s.lastValue))) {
      problems.push(`sequence ${String(s?.schema)}.${String(s?.name)} has no valid value`);
    }
  }
  const roles = (m.catalog as { roles?: unknown } | undefined)?.roles;
  if (m.catalog !== undefined && (!Array.isArray(roles) || roles.some((r) => typeof r !== "string")))
    problems.push("manifest.json's catalog has no list of role names");
  if (problems.length > 0) throw new SnapshotFileError(`snapshot ${expectedId} cannot be restored:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  return m as RestoreManifest;
}

/** Reads a snapshot directory's manifest and schema, checking the schema's sha256 and that it is the configured snapshot. */
export function readSnapshotForRestore(dir: string, expectedId: string): { manifest: RestoreManifest; schemaSql: string } {
  let manifestText: string;
  let schema: Buffer;
  try {
    manifestText = readFileSync(join(dir, MANIFEST_FILE), "utf8");
    schema = readFileSync(join(dir, SCHEMA_FILE));
  } catch (e) {
    throw new SnapshotFileError(
      `snapshot ${expectedId} is not readable in ${dir}: ${(e as Error).message} (set airlock:snapshotDir to the snapshot's directory)`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(manifestText);
  } catch {
    throw new SnapshotFileError(`${join(dir, MANIFEST_FILE)} is not valid JSON`);
  }
  const manifest = checkManifest(raw, expectedId);
  const expected = manifest.files[SCHEMA_FILE];
  if (expected === undefined || createHash("sha256").update(schema).digest("hex") !== expected) {
    throw new SnapshotFileError(`snapshot ${expectedId} is corrupt: schema.sql does not match its checksum`);
  }
  return { manifest, schemaSql: schema.toString("utf8") };
}

/** Splits schema.sql at the post-data marker, as the local restore does (src/snapshot/format.ts), with this program's error type. */
export function splitSchema(schemaSql: string): { pre: string; post: string } {
  try {
    return schemaSections(schemaSql);
  } catch (e) {
    throw new SnapshotFileError(`${(e as Error).message}; capture the snapshot again`);
  }
}

/** What the restore needs to know besides the snapshot. */
export interface RestoreOptions {
  readonly manifest: RestoreManifest;
  readonly schemaSql: string;
  /** CONNECTION LIMIT of the agent's role. */
  readonly maxConnections: number;
  /** Role-level statement_timeout (a Postgres duration). */
  readonly statementTimeout: string;
  readonly paths?: ContainerPaths;
}

/** sha256sum's check list for the data files (schema.sql is checked by the program itself). */
export function checksumList(manifest: RestoreManifest): string {
  return manifest.tables.map((t) => `${manifest.files[t.file]}  ${t.file}\n`).join("");
}

/** restore.sql: the snapshot into the empty `base`, in one transaction. */
export function restoreSql(options: RestoreOptions): string {
  const { manifest } = options;
  const paths = options.paths ?? CONTAINER_PATHS;
  const { pre, post } = splitSchema(options.schemaSql);
  const copies = manifest.tables.map((t) => `${copyInSql(t, { program: `exec gzip -dc -- ${shellQuote(`${paths.staged}/${t.file}`)}` })};`);
  const sequences = manifest.sequences.map((s) => `${setvalSql(s)};`);
  return [
    `-- Airlock: restores snapshot ${manifest.id} into ${BASE_DB}, in one transaction and in pg_dump's order.`,
    "\\set ON_ERROR_STOP on",
    "BEGIN;",
    "-- the roles production's grants and policies name, as NOLOGIN placeholders",
    ...(manifest.catalog === undefined || manifest.catalog.roles.length === 0
      ? []
      : [
          `SELECT format('CREATE ROLE %I NOLOGIN', r) FROM unnest(ARRAY[${manifest.catalog.roles.map(quoteLiteral).join(", ")}]::text[]) r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \\gexec`,
        ]),
    "-- pre-data",
    pre,
    "-- data (the tables were created in this transaction, so FREEZE applies)",
    ...copies,
    "-- sequences",
    ...sequences,
    "-- post-data",
    post,
    "COMMIT;",
    "",
  ].join("\n");
}

/** roles.sql: `work` from `base`, the agent's role, and who may connect where. */
export function rolesSql(options: Pick<RestoreOptions, "maxConnections" | "statementTimeout">): string {
  const limit = Math.trunc(options.maxConnections);
  return [
    "-- Airlock: the agent's database and role. Only the agent and the superuser reach work; only the superuser reaches base.",
    "\\set ON_ERROR_STOP on",
    // A failing statement must not land in the server log with the password in it.
    "SET log_min_error_statement = panic;",
    "SET log_statement = 'none';",
    `CREATE DATABASE ${quoteIdent(WORK_DB)} TEMPLATE ${quoteIdent(BASE_DB)};`,
    // The password comes from the environment: it is in no file, no argument and no log line.
    "\\set agent_password `printenv AIRLOCK_AGENT_PASSWORD`",
    `CREATE ROLE ${quoteIdent(AGENT_ROLE)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${limit} PASSWORD :'agent_password';`,
    "\\unset agent_password",
    `ALTER ROLE ${quoteIdent(AGENT_ROLE)} SET statement_timeout = ${quoteLiteral(options.statementTimeout)};`,
    `REVOKE CONNECT, TEMPORARY ON DATABASE ${quoteIdent(BASE_DB)}, ${quoteIdent(WORK_DB)}, postgres, template1 FROM PUBLIC;`,
    `GRANT CONNECT, TEMPORARY ON DATABASE ${quoteIdent(WORK_DB)} TO ${quoteIdent(AGENT_ROLE)};`,
    `ALTER DATABASE ${quoteIdent(WORK_DB)} OWNER TO ${quoteIdent(AGENT_ROLE)};`,
    "",
  ].join("\n");
}

/** handover.sql: makes the agent the owner of every object in `work`, with the local backend's query (src/staging/roles.ts). */
export function handoverSql(): string {
  return `-- Airlock: the agent owns every object in ${WORK_DB} (sequences owned by a column follow their table).
\\set ON_ERROR_STOP on
${handOverQuery(AGENT_ROLE)}
\\gexec
`;
}
