/**
 * Reads a database's catalog model from pg_catalog. Definitions come from
 * the server's own functions (pg_get_functiondef, pg_get_viewdef,
 * pg_get_triggerdef, pg_get_ruledef, pg_get_constraintdef, pg_get_indexdef,
 * pg_get_expr), so they are exact and normalised the same way on both
 * sides. Objects that belong to an extension, Airlock's own schema and the
 * system schemas are left out; dependencies come from pg_depend.
 */
import type pg from "pg";
import { query } from "../pg/connect.ts";
import type { CatalogModel, DefaultAclObject, RoleMapping, SettingObject } from "./model.ts";
import { OWNER, SERVICE_ROLE } from "./model.ts";
import { displayName } from "./names.ts";
import { readCastsOperatorsAndEventTriggers, readTypesAndFunctions } from "./read-code.ts";
import { USER_NS, aclArray, aclDefaultArray, comment, modelBuilder, notExtensionMember } from "./read-context.ts";
import { readRelations } from "./read-relations.ts";

/**
 * Reads the catalog model of the database `c` is connected to. Definitions
 * are read with search_path = pg_catalog, so every name in them is
 * schema-qualified and means the same wherever the SQL later runs.
 */
export async function readCatalog(c: pg.ClientBase, roles: RoleMapping): Promise<CatalogModel> {
  const previous = (await query<{ p: string }>(c, "SELECT current_setting('search_path') AS p")).rows[0]!.p;
  await query(c, "SELECT set_config('search_path', 'pg_catalog', false)");
  try {
    return await readModel(c, roles);
  } finally {
    await query(c, "SELECT set_config('search_path', $1, false)", [previous]);
  }
}

/** Reads every kind of object, in a fixed order (the model's objects keep it), then the dependencies between them. */
async function readModel(c: pg.ClientBase, roles: RoleMapping): Promise<CatalogModel> {
  const m = modelBuilder(c, roles);
  const { add, mapRole, mapAcl, objects, byAddress } = m;

  // The database itself: its privileges.
  const db = (
    await query<{ oid: number; acl: string[]; acl_default: string[]; comment: string | null }>(
      c,
      `SELECT d.oid::int AS oid, ${aclArray("d.datacl", "'d'", "d.datdba")} AS acl, ${aclDefaultArray("'d'", "d.datdba")} AS acl_default, ${comment("pg_database", "d.oid")} AS comment
         FROM pg_database d WHERE d.datname = current_database()`,
    )
  ).rows[0]!;
  // Airlock's per-diff roles' CONNECT grants are left out (a killed diff can leave them behind); an owner's stay.
  const ownAcl = (acl: readonly string[]) =>
    acl.filter((item) => {
      const grantee = item.slice(0, item.lastIndexOf(":"));
      return roles.owners.has(grantee) || !SERVICE_ROLE.test(grantee);
    });
  add({ kind: "database", id: "database", owner: OWNER, acl: mapAcl(ownAcl(db.acl)), aclDefault: mapAcl(ownAcl(db.acl_default)), comment: db.comment });

  // Schemas.
  for (const r of (
    await query<{ oid: number; name: string; owner: string; acl: string[]; acl_default: string[]; comment: string | null }>(
      c,
      `SELECT n.oid::int AS oid, n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, ${aclArray("n.nspacl", "'n'", "n.nspowner")} AS acl,
              ${aclDefaultArray("'n'", "n.nspowner")} AS acl_default, ${comment("pg_namespace", "n.oid")} AS comment
         FROM pg_namespace n WHERE ${USER_NS} AND ${notExtensionMember("pg_namespace", "n.oid")}`,
    )
  ).rows) {
    add(
      {
        kind: "schema",
        id: `schema ${displayName(r.name)}`,
        name: r.name,
        owner: mapRole(r.owner),
        acl: mapAcl(r.acl),
        aclDefault: mapAcl(r.acl_default),
        comment: r.comment,
      },
      `pg_namespace:${r.oid}:0`,
    );
  }

  // Extensions.
  for (const r of (
    await query<{ oid: number; name: string; schema: string; version: string; comment: string | null }>(
      c,
      `SELECT x.oid::int AS oid, x.extname AS name, n.nspname AS schema, x.extversion AS version, ${comment("pg_extension", "x.oid")} AS comment
         FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE x.extname <> 'plpgsql'`,
    )
  ).rows) {
    add(
      { kind: "extension", id: `extension ${displayName(r.name)}`, name: r.name, schema: r.schema, version: r.version, comment: r.comment },
      `pg_extension:${r.oid}:0`,
    );
  }

  // Types and code, relations and what hangs off them, casts, operators and event triggers (read-code.ts, read-relations.ts).
  await readTypesAndFunctions(m);
  await readRelations(m);
  await readCastsOperatorsAndEventTriggers(m);

  // Default privileges.
  const OBJTYPE = { r: "TABLES", S: "SEQUENCES", f: "FUNCTIONS", T: "TYPES", n: "SCHEMAS" } as const;
  for (const r of (
    await query<{ role: string; schema: string | null; objtype: string; acl: string[]; base: string[] }>(
      c,
      `SELECT pg_get_userbyid(d.defaclrole) AS role, n.nspname AS schema, d.defaclobjtype::text AS objtype,
              (SELECT coalesce(array_agg(CASE WHEN x.grantee = 0 THEN '' ELSE pg_get_userbyid(x.grantee) END || ':' || x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END), '{}') FROM aclexplode(d.defaclacl) x) AS acl,
              CASE WHEN d.defaclnamespace = 0 THEN ${aclDefaultArray("CASE d.defaclobjtype WHEN 'S' THEN 's' ELSE d.defaclobjtype END", "d.defaclrole")} ELSE '{}'::text[] END AS base
         FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace`,
    )
  ).rows) {
    const objtype = OBJTYPE[r.objtype as keyof typeof OBJTYPE];
    if (objtype === undefined) continue;
    const role = mapRole(r.role);
    const o: DefaultAclObject = {
      kind: "default_acl",
      id: `default_acl ${role}:${r.schema === null ? "*" : displayName(r.schema)}:${objtype}`,
      role,
      schema: r.schema,
      objtype,
      acl: mapAcl(r.acl),
      aclDefault: mapAcl(r.base),
    };
    add(o);
  }

  // Settings: this database's, and those of the session's role (everywhere or in this database), less what Airlock imposed.
  for (const r of (
    await query<{ role: string | null; in_db: boolean; config: string[] }>(
      c,
      `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, s.setdatabase <> 0 AS in_db, s.setconfig AS config
         FROM pg_db_role_setting s
        WHERE (s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) OR s.setdatabase = 0) AND NOT (s.setrole = 0 AND s.setdatabase = 0)`,
    )
  ).rows) {
    if (r.role !== null && r.role !== roles.settingsRole) continue;
    for (const item of r.config) {
      if (r.role !== null && roles.imposedRoleSettings?.has(item) === true) continue;
      const at = item.indexOf("=");
      const name = item.slice(0, at);
      const value = item.slice(at + 1);
      const scope: SettingObject["scope"] = r.role === null ? "database" : "role";
      const id = scope === "database" ? `setting database:${name}` : `setting role${r.in_db ? "-in-database" : ""}:${OWNER}:${name}`;
      if (objects[id] !== undefined) continue;
      add({ kind: "setting", id, scope, role: r.role === null ? null : OWNER, inDatabase: r.in_db, name, value });
    }
  }

  // Dependencies between model objects, from pg_depend (an object's parts count as the object).
  const deps = await query<{ cls: string; objid: number; objsubid: number; refcls: string; refobjid: number; refobjsubid: number }>(
    c,
    `SELECT d.classid::regclass::text AS cls, d.objid::int AS objid, d.objsubid AS objsubid, d.refclassid::regclass::text AS refcls, d.refobjid::int AS refobjid, d.refobjsubid AS refobjsubid
       FROM pg_depend d WHERE d.deptype IN ('n', 'a', 'i') AND d.objid >= 16384 AND d.refobjid >= 16384`,
  );
  const resolve = (cls: string, oid: number, sub: number): string | undefined =>
    byAddress.get(`${cls}:${oid}:${sub}`) ?? (sub !== 0 ? byAddress.get(`${cls}:${oid}:0`) : undefined);
  const dependsOn: Record<string, Set<string>> = {};
  for (const d of deps.rows) {
    const from = resolve(d.cls, d.objid, d.objsubid);
    const to = resolve(d.refcls, d.refobjid, d.refobjsubid);
    if (from === undefined || to === undefined || from === to) continue;
    (dependsOn[from] ??= new Set()).add(to);
  }
  // Table-level objects depend on their table; columns on their table.
  for (const o of Object.values(objects)) {
    const parent =
      o.kind === "column"
        ? o.table
        : o.kind === "constraint" || o.kind === "index" || o.kind === "trigger" || o.kind === "rule" || o.kind === "policy"
          ? o.on
          : undefined;
    if (parent !== undefined && objects[parent] !== undefined) (dependsOn[o.id] ??= new Set()).add(parent);
  }
  return { objects, dependsOn: Object.fromEntries(Object.entries(dependsOn).map(([k, v]) => [k, [...v].sort()])) };
}

/** The functions (not built in) an object calls, by the model's dependencies. */
export function callsOf(model: CatalogModel, id: string): string[] {
  return (model.dependsOn[id] ?? []).filter((d) => d.startsWith("function "));
}
