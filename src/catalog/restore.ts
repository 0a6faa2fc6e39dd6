/**
 * What a schema-only dump does not carry, put back after a snapshot is
 * restored: the roles production's grants name (as NOLOGIN placeholders),
 * materialized views' data (pg_dump creates them all WITH NO DATA), and the
 * database's own settings (`ALTER DATABASE … SET` is not in a dump, and
 * `CREATE DATABASE … TEMPLATE` does not copy it). Each is a statement
 * builder: the local restore runs the statements over its connection, the
 * staging container's restore writes the same ones into its psql script
 * (restoreSteps in src/snapshot/restore-sql.ts puts them in order for both),
 * and the local backend gives a session's clones the settings again
 * (applyDatabaseSettings).
 */
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import { query, quoteIdent, quoteLiteral } from "../pg/connect.ts";
import { compareCatalogs } from "./compare.ts";
import { readCatalog } from "./read.ts";
import type { CatalogModel, ViewObject } from "./model.ts";
import { qualifiedName } from "./names.ts";
import { settingSql } from "./sql.ts";
import { plural } from "../format/plural.ts";

/** A placeholder role holds production's grants and nothing else: nobody can log in as it, and it has no other right. */
const PLACEHOLDER_ROLE_ATTRIBUTES = "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT";

/** The statement that creates `role` as a placeholder unless a role of that name exists. */
export function placeholderRoleSql(role: string): string {
  const body = `BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${quoteLiteral(role)}) THEN CREATE ROLE ${quoteIdent(role)} ${PLACEHOLDER_ROLE_ATTRIBUTES}; END IF; END`;
  let tag = "$airlock$";
  for (let i = 0; body.includes(tag); i++) tag = `$airlock${i}$`;
  return `DO ${tag} ${body} ${tag}`;
}

/**
 * The REFRESH statements that give the materialized views production had populated their rows: each after
 * everything it reads, directly or through views. A matview production left empty that a populated one reads
 * is filled for it first and emptied again at the end (REFRESH … WITH NO DATA), as production has it.
 */
export function matviewRefreshSql(model: CatalogModel): string[] {
  const order: ViewObject[] = [];
  const seen = new Set<string>();
  const visit = (id: string): void => {
    if (seen.has(id)) return;
    seen.add(id);
    for (const d of model.dependsOn[id] ?? []) visit(d);
    const o = model.objects[id];
    if (o?.kind === "matview") order.push(o);
  };
  for (const id of Object.keys(model.objects).sort()) {
    const o = model.objects[id];
    if (o?.kind === "matview" && o.populated) visit(id);
  }
  const name = (o: ViewObject) => qualifiedName(o.schema, o.name);
  return [
    ...order.map((o) => `REFRESH MATERIALIZED VIEW ${name(o)}`),
    ...order.filter((o) => !o.populated).map((o) => `REFRESH MATERIALIZED VIEW ${name(o)} WITH NO DATA`),
  ];
}

/** The statements that give the database they run in production's database-level settings, by name. */
export function databaseSettingsSql(model: CatalogModel): string[] {
  return Object.keys(model.objects)
    .sort()
    .flatMap((id) => {
      const o = model.objects[id];
      return o?.kind === "setting" && o.scope === "database" ? [settingSql("database", false, o.name, o.value)] : [];
    });
}

/** Gives the database `c` is connected to production's database-level settings (databaseSettingsSql). */
export async function applyDatabaseSettings(c: pg.ClientBase, model: CatalogModel): Promise<void> {
  for (const sql of databaseSettingsSql(model)) await query(c, sql);
}

/**
 * Proves a restored snapshot holds production's schema: its catalog model,
 * read with production's owners and the restoring superuser both mapped to
 * the owner, must equal the model captured with the snapshot. The
 * database's own privileges (staging narrows CONNECT on purpose) and
 * role-level settings (staging roles are not production's) are left out.
 */
export async function checkRestoredCatalog(c: pg.ClientBase, expected: CatalogModel, owners: readonly string[], snapshotId: string): Promise<void> {
  const actual = await readCatalog(c, { owners: new Set([...owners, (await query<{ u: string }>(c, "SELECT current_user AS u")).rows[0]!.u]) });
  const differences = compareCatalogs(actual, expected, {
    sequenceValues: true,
    ignore: (o, property) => (o.kind === "database" && property !== "comment") || (o.kind === "setting" && o.scope === "role"),
  });
  if (differences.length === 0) return;
  throw new AirlockError(
    "AIRLOCK_RESTORE_MISMATCH",
    `snapshot ${snapshotId} restored into a schema that differs from production's in ${plural(differences.length, "object")}:\n${differences
      .slice(0, 20)
      .map((d) => `  - ${d.id}: ${d.difference}`)
      .join("\n")}`,
    {
      hint: "this is an object kind or setting Airlock cannot carry yet; please report it with the list above",
      details: { differences },
    },
  );
}
