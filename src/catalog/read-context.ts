/**
 * What the catalog readers share: the model being built (objects by id, and
 * pg_depend addresses "catalog:oid:subid" → model id), the role mapping that
 * makes staging's and production's owners compare equal, and the SQL
 * fragments every catalog query uses.
 */
import type pg from "pg";
import type { CatalogObject, RoleMapping } from "./model.ts";
import { OWNER } from "./model.ts";

/** User schemas: not the system's, not Airlock's own. */
export const USER_NS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`;
/** Not part of an extension (its objects come with it). */
export const notExtensionMember = (catalog: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend xd WHERE xd.classid = '${catalog}'::regclass AND xd.objid = ${oid} AND xd.deptype = 'e')`;
/** The comment on an object (or one of its columns). */
export const comment = (catalog: string, oid: string, sub = "0") =>
  `(SELECT ds.description FROM pg_description ds WHERE ds.classoid = '${catalog}'::regclass AND ds.objoid = ${oid} AND ds.objsubid = ${sub})`;
/** An ACL as "grantee:PRIVILEGE[*]" strings (grantee '' for PUBLIC), NULL meaning the default for kind and owner. */
export const aclArray = (acl: string, kind: string, owner: string) =>
  `(SELECT coalesce(array_agg(CASE WHEN x.grantee = 0 THEN '' ELSE pg_get_userbyid(x.grantee) END || ':' || x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END), '{}') FROM aclexplode(coalesce(${acl}, acldefault((${kind})::"char", ${owner}))) x)`;
/** The default ACL for an object kind and owner, in the same form. */
export const aclDefaultArray = (kind: string, owner: string) => aclArray("NULL", kind, owner);

const ENABLED = new Set(["O", "D", "R", "A"]);
export type Enabled = "O" | "D" | "R" | "A";
/** A trigger's, rule's or event trigger's enabled state (O, D, R, A). */
export const enabled = (c: string): Enabled => (ENABLED.has(c) ? (c as Enabled) : "O");

/** The model under construction and what every reader needs to add to it. */
export interface ModelBuilder {
  readonly c: pg.ClientBase;
  readonly roles: RoleMapping;
  readonly objects: Record<string, CatalogObject>;
  /** "catalog:oid:subid" → model id, for pg_depend. */
  readonly byAddress: Map<string, string>;
  /** Adds an object under its id and the pg_depend addresses that mean it. */
  add(o: CatalogObject, ...addresses: string[]): void;
  /** A role as the model names it: owners compare as OWNER, "" or null as PUBLIC. */
  mapRole(r: string | null): string;
  /** An ACL with its grantees mapped, deduplicated and sorted. */
  mapAcl(items: readonly string[] | null): string[];
}

/** An empty model for the database `c` is connected to. */
export function modelBuilder(c: pg.ClientBase, roles: RoleMapping): ModelBuilder {
  const mapRole = (r: string | null): string => (r === null || r === "" ? "PUBLIC" : roles.owners.has(r) ? OWNER : r);
  const mapAcl = (items: readonly string[] | null): string[] => {
    const out = new Set<string>();
    for (const item of items ?? []) {
      const at = item.lastIndexOf(":");
      out.add(`${mapRole(item.slice(0, at))}:${item.slice(at + 1)}`);
    }
    return [...out].sort();
  };
  const objects: Record<string, CatalogObject> = {};
  const byAddress = new Map<string, string>();
  const add = (o: CatalogObject, ...addresses: string[]) => {
    objects[o.id] = o;
    for (const a of addresses) byAddress.set(a, o.id);
  };
  return { c, roles, objects, byAddress, add, mapRole, mapAcl };
}
