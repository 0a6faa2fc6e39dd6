/**
 * Production's roles as the catalog model sees them: which roles own its
 * objects (mapped to the owner on both sides), and which roles its grants,
 * policies and default privileges name (recreated in staging as NOLOGIN
 * placeholders, so those grants survive the round trip).
 */
import type pg from "pg";
import { query } from "../pg/connect.ts";
import type { CatalogModel } from "./model.ts";
import { OWNER } from "./model.ts";

/** Roles that own objects in the user schemas of the database `c` is connected to. */
export async function objectOwners(c: pg.ClientBase): Promise<string[]> {
  const r = await query<{ owner: string }>(
    c,
    `SELECT DISTINCT pg_get_userbyid(o) AS owner FROM (
       SELECT k.relowner AS o FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'
       UNION SELECT p.proowner FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'
       UNION SELECT t.typowner FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'
       UNION SELECT n.nspowner FROM pg_namespace n WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'
     ) x WHERE pg_get_userbyid(o) <> 'pg_database_owner' ORDER BY 1`,
  );
  return r.rows.map((x) => x.owner);
}

/** Every role a model names (grantees, policy roles, default-privilege roles), less PUBLIC, the owner and built-in roles. */
export function namedRoles(model: CatalogModel, owners: readonly string[]): string[] {
  const out = new Set<string>(owners);
  const grantee = (item: string) => item.slice(0, item.lastIndexOf(":"));
  for (const o of Object.values(model.objects)) {
    for (const item of [...(o.acl ?? []), ...(o.aclDefault ?? [])]) out.add(grantee(item));
    if (o.owner !== undefined) out.add(o.owner);
    if (o.kind === "policy") for (const r of o.roles) out.add(r);
    if (o.kind === "default_acl") out.add(o.role);
  }
  return [...out].filter((r) => r !== "PUBLIC" && r !== OWNER && !r.startsWith("pg_") && r !== "").sort();
}
