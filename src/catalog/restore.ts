/**
 * What a schema-only dump does not carry, put back after a snapshot is
 * restored: the roles production's grants name (as NOLOGIN placeholders),
 * materialized views' data (pg_dump creates them all WITH NO DATA), and the
 * database's own settings (`ALTER DATABASE … SET` is not in a dump, and
 * `CREATE DATABASE … TEMPLATE` does not copy it).
 */
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { compareCatalogs } from "./compare.ts";
import { readCatalog } from "./read.ts";
import type { CatalogModel } from "./model.ts";
import { qualifiedName } from "./names.ts";
import { settingSql } from "./sql.ts";

/** Creates each role that does not exist yet as a NOLOGIN placeholder: it can hold grants, nobody can log in as it. */
export async function createPlaceholderRoles(c: pg.ClientBase, roles: readonly string[]): Promise<void> {
  for (const role of roles) {
    const exists = await query(c, "SELECT 1 FROM pg_roles WHERE rolname = $1", [role]);
    if (exists.rowCount === 0) await query(c, `CREATE ROLE ${quoteIdent(role)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT`);
  }
}

/** Refreshes the materialized views production had populated, each after those it reads. */
export async function refreshPopulatedMatviews(c: pg.ClientBase, model: CatalogModel): Promise<void> {
  const done = new Set<string>();
  const visit = async (id: string): Promise<void> => {
    if (done.has(id)) return;
    done.add(id);
    for (const d of model.dependsOn[id] ?? []) if (model.objects[d]?.kind === "matview") await visit(d);
    const o = model.objects[id];
    if (o?.kind === "matview" && o.populated) await query(c, `REFRESH MATERIALIZED VIEW ${qualifiedName(o.schema, o.name)}`);
  };
  for (const id of Object.keys(model.objects).sort()) if (model.objects[id]?.kind === "matview") await visit(id);
}

/** Gives the database `c` is connected to production's database-level settings. */
export async function applyDatabaseSettings(c: pg.ClientBase, model: CatalogModel): Promise<void> {
  for (const o of Object.values(model.objects))
    if (o.kind === "setting" && o.scope === "database") await query(c, settingSql("database", false, o.name, o.value));
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
    `snapshot ${snapshotId} restored into a schema that differs from production's in ${differences.length} object${differences.length === 1 ? "" : "s"}:\n${differences
      .slice(0, 20)
      .map((d) => `  - ${d.id}: ${d.difference}`)
      .join("\n")}`,
    {
      hint: "this is an object kind or setting Airlock cannot carry yet; please report it with the list above",
      details: { differences },
    },
  );
}
