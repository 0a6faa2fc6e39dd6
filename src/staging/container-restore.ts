/**
 * What the staging container runs to restore a snapshot, generated from the
 * snapshot's manifest and catalog when the program runs (the image has no jq
 * and no Node): the SQL the container's init script feeds to psql. It is the
 * local restore's (src/snapshot/restore.ts): the same steps, in the same
 * order, from the same builder (restoreSteps in src/snapshot/restore-sql.ts):
 * the session's settings, production's roles as placeholders, pre-data,
 * COPY … WITH (FREEZE) per table, sequence values, post-data, the
 * materialized views production had populated and the database's settings,
 * in one transaction; `work`, cloned from `base`, gets the database's
 * settings again, as the local backend gives them to a session's clones.
 * The program checks schema.sql and catalog.json against the manifest's
 * sha256 as it reads them; the entrypoint checks the data files in the
 * container. No password is in any of these files: the agent's comes from
 * the container's (secret) environment. From src/ it takes only the
 * snapshot's format and store, the catalog and the SQL both restores share,
 * and the staging names (test/layers.test.ts keeps the capture and its
 * masking code out of the program).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { CatalogModel } from "../catalog/model.ts";
import { catalogModelSchema } from "../catalog/model-schema.ts";
import { databaseSettingsSql } from "../catalog/restore.ts";
import { parseStateText } from "../config/state-file.ts";
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";
import { MANIFEST_FILE, SCHEMA_FILE, schemaSections } from "../snapshot/format.ts";
import { type RestoreSection, copyInSql, restoreSteps, sessionSql } from "../snapshot/restore-sql.ts";
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
    // An empty list is a table with nothing to copy but its rows (no columns, or only generated ones).
    if (!Array.isArray(t?.columns) || t.columns.some((c: { name?: unknown } | null) => typeof c?.name !== "string"))
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
  if (m.catalog !== undefined) {
    const catalog = m.catalog as { file?: unknown; owners?: unknown; roles?: unknown } | null;
    const names = (list: unknown) => Array.isArray(list) && list.every((r) => typeof r === "string");
    if (!names(catalog?.roles)) problems.push("manifest.json's catalog has no list of role names");
    if (!names(catalog?.owners)) problems.push("manifest.json's catalog has no list of owners");
    if (typeof catalog?.file !== "string") problems.push("manifest.json's catalog names no file");
    else {
      const unsafe = unsafePath(catalog.file);
      if (unsafe !== null) problems.push(`the catalog file ${unsafe}: ${JSON.stringify(catalog.file)}`);
      const hash = files?.[catalog.file];
      if (typeof hash !== "string" || !SHA256.test(hash)) problems.push(`the catalog file (${catalog.file}) has no sha256 in the manifest`);
    }
  }
  if (problems.length > 0) throw new SnapshotFileError(`snapshot ${expectedId} cannot be restored:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  return m as RestoreManifest;
}

/** What the program reads of a snapshot directory: what restoreSql and rolesSql need besides the container's limits. */
export interface SnapshotForRestore {
  readonly manifest: RestoreManifest;
  readonly schemaSql: string;
  /** Production's catalog model (catalog.json), or null for a snapshot taken before snapshots had one. */
  readonly catalog: CatalogModel | null;
}

/**
 * The catalog model as the local restore reads it (readSnapshotCatalog in src/snapshot/store.ts): its bytes
 * checked against the manifest's sha256, then parsed with the model's schema; with this program's error type.
 */
function readCatalogForRestore(dir: string, manifest: RestoreManifest): CatalogModel | null {
  if (manifest.catalog === undefined) return null;
  const { file } = manifest.catalog;
  let text: Buffer;
  try {
    text = readFileSync(join(dir, file));
  } catch (e) {
    throw new SnapshotFileError(`snapshot ${manifest.id} is not readable in ${dir}: ${(e as Error).message}`);
  }
  if (createHash("sha256").update(text).digest("hex") !== manifest.files[file]) {
    throw new SnapshotFileError(`snapshot ${manifest.id} is corrupt: ${file} does not match its checksum`);
  }
  try {
    return parseStateText(join(dir, file), text.toString("utf8"), catalogModelSchema, { code: "AIRLOCK_SNAPSHOT_CORRUPT", hint: "capture the snapshot again" });
  } catch (e) {
    // Its bytes are the capture's: a model this version does not read.
    throw new SnapshotFileError(`snapshot ${manifest.id} cannot be restored: ${(e as Error).message}`);
  }
}

/** Reads a snapshot directory's manifest, schema and catalog, checking their sha256 and that it is the configured snapshot. */
export function readSnapshotForRestore(dir: string, expectedId: string): SnapshotForRestore {
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
  return { manifest, schemaSql: schema.toString("utf8"), catalog: readCatalogForRestore(dir, manifest) };
}

/** Splits schema.sql at the post-data marker, as the local restore does (src/snapshot/format.ts), with this program's error type. */
export function splitSchema(schemaSql: string): { pre: string; post: string } {
  try {
    return schemaSections(schemaSql);
  } catch (e) {
    throw new SnapshotFileError(`${(e as Error).message}; capture the snapshot again`);
  }
}

/** What the restore needs to know: the snapshot as readSnapshotForRestore read it, and the container's limits. */
export interface RestoreOptions extends SnapshotForRestore {
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

/** What each part of the restore is, for a reader of restore.sql. */
const SECTIONS: Readonly<Record<RestoreSection, string>> = {
  session: "the session's settings, as every Airlock connection pins them",
  roles: "the roles production's grants and policies name, as NOLOGIN placeholders",
  "pre-data": "pre-data",
  data: "data (the tables were created in this transaction, so FREEZE applies)",
  sequences: "sequences",
  "post-data": "post-data",
  matviews: "the materialized views production had populated, each after what it reads",
  settings: "the database's own settings (ALTER DATABASE … SET)",
};

/** restore.sql: the snapshot into the empty `base`, in one transaction, with the local restore's steps (restoreSteps). */
export function restoreSql(options: RestoreOptions): string {
  const { manifest } = options;
  const paths = options.paths ?? CONTAINER_PATHS;
  const steps = restoreSteps({ manifest, schema: splitSchema(options.schemaSql), catalog: options.catalog });
  const lines = [
    `-- Airlock: restores snapshot ${manifest.id} into ${BASE_DB}, in one transaction and in pg_dump's order.`,
    "\\set ON_ERROR_STOP on",
    "BEGIN;",
  ];
  let section: RestoreSection | undefined;
  for (const step of steps) {
    if (step.section !== section) lines.push(`-- ${SECTIONS[step.section]}`);
    section = step.section;
    if (step.kind === "copy") lines.push(`${copyInSql(step.table, { program: `exec gzip -dc -- ${shellQuote(`${paths.staged}/${step.table.file}`)}` })};`);
    else lines.push(step.kind === "script" ? step.sql : `${step.sql};`);
  }
  return [...lines, "COMMIT;", ""].join("\n");
}

/**
 * roles.sql: `work` from `base`, the agent's role, who may connect where, and production's database settings
 * on `work` (CREATE DATABASE … TEMPLATE does not copy them; the local backend gives a session's clones them the
 * same way, connected to each with Airlock's session settings). Ends connected to `work`.
 */
export function rolesSql(options: Pick<RestoreOptions, "maxConnections" | "statementTimeout" | "catalog">): string {
  const limit = Math.trunc(options.maxConnections);
  // Without it, work would go without production's settings: null is a snapshot without a catalog model.
  if (options.catalog === undefined) throw new Error("rolesSql was not given the snapshot's catalog model (null for a snapshot without one)");
  const settings = options.catalog === null ? [] : databaseSettingsSql(options.catalog);
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
    // CONNECT only, as the local backend and the diff's replay clones do: their database privileges must compare equal.
    `REVOKE CONNECT ON DATABASE ${quoteIdent(BASE_DB)}, ${quoteIdent(WORK_DB)}, postgres, template1 FROM PUBLIC;`,
    `GRANT CONNECT ON DATABASE ${quoteIdent(WORK_DB)} TO ${quoteIdent(AGENT_ROLE)};`,
    `ALTER DATABASE ${quoteIdent(WORK_DB)} OWNER TO ${quoteIdent(AGENT_ROLE)};`,
    ...(settings.length === 0
      ? []
      : ["-- production's database settings, on work", `\\connect ${quoteIdent(WORK_DB)}`, `${sessionSql()};`, ...settings.map((sql) => `${sql};`)]),
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
