/**
 * The one restore both backends run, as an ordered list of steps
 * (restoreSteps): the session's settings, production's roles as
 * placeholders, pg_dump's pre-data, each table's data file, the sequences'
 * values, post-data, the materialized views production had populated and
 * the database's own settings. The local restore (src/snapshot/restore.ts)
 * runs the steps over its connection, streaming each data file into its
 * COPY; the staging container's (src/staging/container-restore.ts) writes
 * them into the psql script it runs, each COPY reading its file through a
 * program. One list, built here, so the two cannot drift apart.
 */
import type { CatalogModel } from "../catalog/model.ts";
import { databaseSettingsSql, matviewRefreshSql, placeholderRoleSql } from "../catalog/restore.ts";
import { PINNED_SETTINGS, quoteIdent, quoteLiteral } from "../pg/connect.ts";
import type { SnapshotManifest } from "./store.ts";

/** Where COPY reads a table's rows: the client's stream, or a program the server runs. */
export type CopySource = "stdin" | { readonly program: string };

/** What COPY needs to know of a table: its name and the columns its data file holds, in order. */
export interface CopyTable {
  readonly schema: string;
  readonly name: string;
  readonly columns: ReadonlyArray<{ readonly name: string }>;
}

/**
 * The COPY that loads a table's data file. A table with nothing to copy (no columns, or only generated ones)
 * has an empty line per row: COPY without a column list takes its default list, which is empty then, and
 * loads each empty line as one row (an empty list in parentheses is a syntax error). FREEZE: the restore
 * created the table in the same transaction.
 */
export function copyInSql(t: CopyTable, source: CopySource): string {
  const table = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
  const cols = t.columns.length === 0 ? "" : ` (${t.columns.map((c) => quoteIdent(c.name)).join(", ")})`;
  const from = source === "stdin" ? "STDIN" : `PROGRAM ${quoteLiteral(source.program)}`;
  return `COPY ${table}${cols} FROM ${from} WITH (FREEZE)`;
}

/** The setval that gives a sequence the value and is_called production had. */
export function setvalSql(s: SnapshotManifest["sequences"][number]): string {
  const name = quoteLiteral(`${quoteIdent(s.schema)}.${quoteIdent(s.name)}`);
  return `SELECT pg_catalog.setval(${name}, ${s.lastValue}, ${s.isCalled})`;
}

/**
 * The restoring session's settings: the ones every Airlock connection pins (src/pg/connect.ts; the local
 * restore's connection starts with them) and UTF-8, the snapshot files' encoding, which COPY FROM assumes for
 * a file without an ENCODING option. So neither the rows a materialized view is refreshed with (TimeZone,
 * DateStyle, …) nor how COPY reads the files depends on a server's or a client's defaults. Through
 * set_config, which reads a value as a startup option does (search_path is a list).
 */
export function sessionSql(): string {
  const settings: Record<string, string> = { ...PINNED_SETTINGS, client_encoding: "UTF8" };
  const calls = Object.entries(settings).map(([name, value]) => `PERFORM pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false);`);
  return `DO $airlock$ BEGIN ${calls.join(" ")} END $airlock$`;
}

/** The parts of a restore, in the order they run. */
export type RestoreSection = "session" | "roles" | "pre-data" | "data" | "sequences" | "post-data" | "matviews" | "settings";

/**
 * One step of a restore: a statement (without its semicolon), one of pg_dump's sections (several statements,
 * terminated), or the loading of a table's data file, whose COPY depends on where the rows come from
 * (copyInSql).
 */
export type RestoreStep<T extends CopyTable = CopyTable> =
  | { readonly kind: "statement"; readonly section: RestoreSection; readonly sql: string }
  | { readonly kind: "script"; readonly section: "pre-data" | "post-data"; readonly sql: string }
  | { readonly kind: "copy"; readonly section: "data"; readonly table: T };

/** What a restore is made of. */
export interface RestoreInput<T extends CopyTable> {
  readonly manifest: { readonly tables: readonly T[]; readonly sequences: SnapshotManifest["sequences"]; readonly catalog?: SnapshotManifest["catalog"] };
  /** schema.sql split at its post-data marker (schemaSections in format.ts). */
  readonly schema: { readonly pre: string; readonly post: string };
  /** Production's catalog model (catalog.json), or null for a snapshot taken before snapshots had one. */
  readonly catalog: CatalogModel | null;
}

/**
 * Every step of restoring a snapshot into an empty database, in order; the caller runs them in one
 * transaction. Grants and policies name production's roles, so they exist before the schema does; data
 * before post-data (constraints and indexes are built once, over the loaded rows); materialized views and
 * the database's settings last, over the finished schema.
 */
export function restoreSteps<T extends CopyTable>(input: RestoreInput<T>): Array<RestoreStep<T>> {
  // Without its model, a snapshot that has one would restore without its materialized views' rows and its settings.
  const catalog = input.catalog ?? null;
  if (input.manifest.catalog !== undefined && catalog === null)
    throw new Error(`the snapshot has a catalog model (${input.manifest.catalog.file}), but the restore was not given it`);
  const statements = (section: RestoreSection, sqls: readonly string[]): Array<RestoreStep<T>> => sqls.map((sql) => ({ kind: "statement", section, sql }));
  return [
    ...statements("session", [sessionSql()]),
    ...statements("roles", (input.manifest.catalog?.roles ?? []).map(placeholderRoleSql)),
    { kind: "script", section: "pre-data", sql: input.schema.pre },
    ...input.manifest.tables.map((table): RestoreStep<T> => ({ kind: "copy", section: "data", table })),
    ...statements("sequences", input.manifest.sequences.map(setvalSql)),
    { kind: "script", section: "post-data", sql: input.schema.post },
    ...statements("matviews", catalog === null ? [] : matviewRefreshSql(catalog)),
    ...statements("settings", catalog === null ? [] : databaseSettingsSql(catalog)),
  ];
}
