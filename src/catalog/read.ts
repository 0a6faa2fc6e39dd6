/**
 * Reads a database's catalog model from pg_catalog. Definitions come from
 * the server's own functions (pg_get_functiondef, pg_get_viewdef,
 * pg_get_triggerdef, pg_get_ruledef, pg_get_constraintdef, pg_get_indexdef,
 * pg_get_expr), so they are exact and normalised the same way on both
 * sides. Objects that belong to an extension, Airlock's own schema and the
 * system schemas are left out; dependencies come from pg_depend.
 */
import type pg from "pg";
import { query, quoteLiteral } from "../pg/connect.ts";
import type {
  CatalogModel,
  CatalogObject,
  ColumnObject,
  DefaultAclObject,
  FunctionObject,
  RoleMapping,
  SettingObject,
  TableObject,
  TypeObject,
} from "./model.ts";
import { OWNER } from "./model.ts";
import { displayName, qualifiedName } from "./names.ts";

const USER_NS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'`;
const notExtensionMember = (catalog: string, oid: string) => `NOT EXISTS (SELECT 1 FROM pg_depend xd WHERE xd.classid = '${catalog}'::regclass AND xd.objid = ${oid} AND xd.deptype = 'e')`;
const comment = (catalog: string, oid: string, sub = "0") => `(SELECT ds.description FROM pg_description ds WHERE ds.classoid = '${catalog}'::regclass AND ds.objoid = ${oid} AND ds.objsubid = ${sub})`;
/** An ACL as "grantee:PRIVILEGE[*]" strings (grantee '' for PUBLIC), NULL meaning the default for kind and owner. */
const aclArray = (acl: string, kind: string, owner: string) =>
  `(SELECT coalesce(array_agg(CASE WHEN x.grantee = 0 THEN '' ELSE pg_get_userbyid(x.grantee) END || ':' || x.privilege_type || CASE WHEN x.is_grantable THEN '*' ELSE '' END), '{}') FROM aclexplode(coalesce(${acl}, acldefault((${kind})::"char", ${owner}))) x)`;
const aclDefaultArray = (kind: string, owner: string) => aclArray("NULL", kind, owner);

const ENABLED = new Set(["O", "D", "R", "A"]);
type Enabled = "O" | "D" | "R" | "A";
const enabled = (c: string): Enabled => (ENABLED.has(c) ? (c as Enabled) : "O");

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

async function readModel(c: pg.ClientBase, roles: RoleMapping): Promise<CatalogModel> {
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
  /** "catalog:oid:subid" → model id, for pg_depend. */
  const byAddress = new Map<string, string>();
  const add = (o: CatalogObject, ...addresses: string[]) => {
    objects[o.id] = o;
    for (const a of addresses) byAddress.set(a, o.id);
  };

  // The database itself: its privileges.
  const db = (
    await query<{ oid: number; acl: string[]; acl_default: string[]; comment: string | null }>(
      c,
      `SELECT d.oid::int AS oid, ${aclArray("d.datacl", "'d'", "d.datdba")} AS acl, ${aclDefaultArray("'d'", "d.datdba")} AS acl_default, ${comment("pg_database", "d.oid")} AS comment
         FROM pg_database d WHERE d.datname = current_database()`,
    )
  ).rows[0]!;
  add({ kind: "database", id: "database", owner: OWNER, acl: mapAcl(db.acl), aclDefault: mapAcl(db.acl_default), comment: db.comment });

  // Schemas.
  for (const r of (
    await query<{ oid: number; name: string; owner: string; acl: string[]; acl_default: string[]; comment: string | null }>(
      c,
      `SELECT n.oid::int AS oid, n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, ${aclArray("n.nspacl", "'n'", "n.nspowner")} AS acl,
              ${aclDefaultArray("'n'", "n.nspowner")} AS acl_default, ${comment("pg_namespace", "n.oid")} AS comment
         FROM pg_namespace n WHERE ${USER_NS} AND ${notExtensionMember("pg_namespace", "n.oid")}`,
    )
  ).rows) {
    add({ kind: "schema", id: `schema ${displayName(r.name)}`, name: r.name, owner: mapRole(r.owner), acl: mapAcl(r.acl), aclDefault: mapAcl(r.acl_default), comment: r.comment }, `pg_namespace:${r.oid}:0`);
  }

  // Extensions.
  for (const r of (
    await query<{ oid: number; name: string; schema: string; version: string; comment: string | null }>(
      c,
      `SELECT x.oid::int AS oid, x.extname AS name, n.nspname AS schema, x.extversion AS version, ${comment("pg_extension", "x.oid")} AS comment
         FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE x.extname <> 'plpgsql'`,
    )
  ).rows) {
    add({ kind: "extension", id: `extension ${displayName(r.name)}`, name: r.name, schema: r.schema, version: r.version, comment: r.comment }, `pg_extension:${r.oid}:0`);
  }

  // Types: enums, domains, composites (not a table's row type), ranges, base types with their own I/O.
  const types = await query<{
    oid: number;
    schema: string;
    name: string;
    typtype: string;
    owner: string;
    acl: string[];
    acl_default: string[];
    comment: string | null;
    labels: string[] | null;
    base: string | null;
    collation: string | null;
    default: string | null;
    not_null: boolean;
    checks: string[] | null;
    attrs: string[] | null;
    range: string | null;
    multirange: number | null;
    array: number | null;
    io: string | null;
    functions: string[] | null;
  }>(
    c,
    `SELECT t.oid::int AS oid, n.nspname AS schema, t.typname AS name, t.typtype::text AS typtype, pg_get_userbyid(t.typowner) AS owner,
            ${aclArray("t.typacl", "'T'", "t.typowner")} AS acl, ${aclDefaultArray("'T'", "t.typowner")} AS acl_default, ${comment("pg_type", "t.oid")} AS comment,
            (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
            CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base,
            CASE WHEN t.typcollation <> 0 AND t.typtype = 'd' AND t.typcollation <> (SELECT bt.typcollation FROM pg_type bt WHERE bt.oid = t.typbasetype)
                 THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = t.typcollation) END AS collation,
            t.typdefault AS default, t.typnotnull AS not_null,
            (SELECT array_agg('CONSTRAINT ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid) ORDER BY k.conname) FROM pg_constraint k WHERE k.contypid = t.oid) AS checks,
            (SELECT array_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) AS attrs,
            (SELECT 'SUBTYPE = ' || format_type(r.rngsubtype, NULL)
                    || CASE WHEN r.rngcanonical <> 0 THEN ', CANONICAL = ' || r.rngcanonical::regproc::text ELSE '' END
                    || CASE WHEN r.rngsubdiff <> 0 THEN ', SUBTYPE_DIFF = ' || r.rngsubdiff::regproc::text ELSE '' END
                    || ', MULTIRANGE_TYPE_NAME = ' || r.rngmultitypid::regtype::text
               FROM pg_range r WHERE r.rngtypid = t.oid) AS range,
            (SELECT r.rngmultitypid::int FROM pg_range r WHERE r.rngtypid = t.oid) AS multirange,
            (SELECT a.oid::int FROM pg_type a WHERE a.typelem = t.oid AND a.oid = t.typarray) AS array,
            CASE WHEN t.typtype = 'b' THEN
              'INPUT = ' || t.typinput::regproc::text || ', OUTPUT = ' || t.typoutput::regproc::text
              || CASE WHEN t.typreceive <> 0 THEN ', RECEIVE = ' || t.typreceive::regproc::text ELSE '' END
              || CASE WHEN t.typsend <> 0 THEN ', SEND = ' || t.typsend::regproc::text ELSE '' END
              || ', INTERNALLENGTH = ' || CASE WHEN t.typlen < 0 THEN 'VARIABLE' ELSE t.typlen::text END
              || CASE WHEN t.typbyval THEN ', PASSEDBYVALUE' ELSE '' END
              || ', ALIGNMENT = ' || CASE t.typalign WHEN 'c' THEN 'char' WHEN 's' THEN 'int2' WHEN 'i' THEN 'int4' ELSE 'double' END
              || ', STORAGE = ' || CASE t.typstorage WHEN 'p' THEN 'plain' WHEN 'e' THEN 'external' WHEN 'm' THEN 'main' ELSE 'extended' END
              || ', CATEGORY = ' || quote_literal(t.typcategory::text)
            END AS io,
            CASE WHEN t.typtype = 'b' THEN array_remove(ARRAY[t.typinput::oid, t.typoutput::oid, t.typreceive::oid, t.typsend::oid]::oid[], 0::oid)::int[]::text[]
                 WHEN t.typtype = 'r' THEN (SELECT array_remove(ARRAY[r.rngcanonical::oid, r.rngsubdiff::oid], 0::oid)::int[]::text[] FROM pg_range r WHERE r.rngtypid = t.oid) END AS functions
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE ${USER_NS} AND ${notExtensionMember("pg_type", "t.oid")}
        AND (t.typtype IN ('e', 'd', 'r', 'b') OR (t.typtype = 'c' AND (SELECT k.relkind FROM pg_class k WHERE k.oid = t.typrelid) = 'c'))
        AND NOT (t.typtype = 'b' AND t.typelem <> 0 AND t.typsubscript = 'array_subscript_handler'::regproc)`,
  );
  const functionIds = new Map<number, string>();
  const pendingTypeFunctions: Array<{ id: string; oids: number[] }> = [];
  for (const r of types.rows) {
    const qname = qualifiedName(r.schema, r.name);
    const id = `type ${displayName(r.schema)}.${displayName(r.name)}`;
    let definition: string;
    let typtype: TypeObject["typtype"];
    if (r.typtype === "e") {
      typtype = "enum";
      definition = `CREATE TYPE ${qname} AS ENUM (${(r.labels ?? []).map(quoteLiteral).join(", ")})`;
    } else if (r.typtype === "d") {
      typtype = "domain";
      definition = [`CREATE DOMAIN ${qname} AS ${r.base}`, r.collation === null ? "" : ` COLLATE ${r.collation}`, r.default === null ? "" : ` DEFAULT ${r.default}`, r.not_null ? " NOT NULL" : "", ...(r.checks ?? []).map((k) => ` ${k}`)].join("");
    } else if (r.typtype === "c") {
      typtype = "composite";
      definition = `CREATE TYPE ${qname} AS (${(r.attrs ?? []).join(", ")})`;
    } else if (r.typtype === "r") {
      typtype = "range";
      definition = `CREATE TYPE ${qname} AS RANGE (${r.range})`;
    } else {
      typtype = "base";
      definition = `CREATE TYPE ${qname} (${r.io})`;
    }
    const o: TypeObject = {
      kind: "type",
      id,
      schema: r.schema,
      name: r.name,
      typtype,
      definition,
      ...(r.labels === null ? {} : { labels: r.labels }),
      owner: mapRole(r.owner),
      acl: mapAcl(r.acl),
      aclDefault: mapAcl(r.acl_default),
      comment: r.comment,
    };
    add(o, `pg_type:${r.oid}:0`, ...(r.array === null ? [] : [`pg_type:${r.array}:0`]), ...(r.multirange === null ? [] : [`pg_type:${r.multirange}:0`]));
    if (r.functions !== null && r.functions.length > 0) pendingTypeFunctions.push({ id, oids: r.functions.map(Number) });
  }

  // Functions, procedures, aggregates.
  const fns = await query<{
    oid: number;
    schema: string;
    name: string;
    args: string;
    prokind: string;
    language: string;
    secdef: boolean;
    volatile: string;
    returns: string;
    def: string | null;
    agg: string | null;
    owner: string;
    acl: string[];
    acl_default: string[];
    comment: string | null;
  }>(
    c,
    `SELECT p.oid::int AS oid, n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS args, p.prokind::text AS prokind,
            l.lanname AS language, p.prosecdef AS secdef, p.provolatile::text AS volatile, coalesce(pg_get_function_result(p.oid), '') AS returns,
            CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def,
            (SELECT 'SFUNC = ' || a.aggtransfn::regproc::text || ', STYPE = ' || format_type(a.aggtranstype, NULL)
                    || CASE WHEN a.aggfinalfn <> 0 THEN ', FINALFUNC = ' || a.aggfinalfn::regproc::text ELSE '' END
                    || CASE WHEN a.aggcombinefn <> 0 THEN ', COMBINEFUNC = ' || a.aggcombinefn::regproc::text ELSE '' END
                    || CASE WHEN a.agginitval IS NOT NULL THEN ', INITCOND = ' || quote_literal(a.agginitval) ELSE '' END
                    || CASE WHEN a.aggsortop <> 0 THEN ', SORTOP = OPERATOR(' || a.aggsortop::regoperator::text || ')' ELSE '' END
               FROM pg_aggregate a WHERE a.aggfnoid = p.oid) AS agg,
            pg_get_userbyid(p.proowner) AS owner, ${aclArray("p.proacl", "'f'", "p.proowner")} AS acl, ${aclDefaultArray("'f'", "p.proowner")} AS acl_default,
            ${comment("pg_proc", "p.oid")} AS comment
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
      WHERE ${USER_NS} AND ${notExtensionMember("pg_proc", "p.oid")}
        -- A range type's constructor functions come with the type.
        AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass AND i.objid = p.oid AND i.deptype = 'i')`,
  );
  for (const r of fns.rows) {
    const id = `function ${displayName(r.schema)}.${displayName(r.name)}(${r.args})`;
    const prokind: FunctionObject["prokind"] = r.prokind === "p" ? "procedure" : r.prokind === "a" ? "aggregate" : r.prokind === "w" ? "window" : "function";
    const definition = r.def !== null ? r.def.trim() : `CREATE AGGREGATE ${qualifiedName(r.schema, r.name)}(${r.args}) (${r.agg ?? ""})`;
    add(
      {
        kind: "function",
        id,
        schema: r.schema,
        name: r.name,
        args: r.args,
        prokind,
        language: r.language,
        securityDefiner: r.secdef,
        volatility: r.volatile === "i" ? "immutable" : r.volatile === "s" ? "stable" : "volatile",
        returns: r.returns,
        definition,
        owner: mapRole(r.owner),
        acl: mapAcl(r.acl),
        aclDefault: mapAcl(r.acl_default),
        comment: r.comment,
      },
      `pg_proc:${r.oid}:0`,
    );
    functionIds.set(r.oid, id);
  }
  for (const p of pendingTypeFunctions) {
    const t = objects[p.id] as TypeObject;
    objects[p.id] = { ...t, functions: p.oids.map((o) => functionIds.get(o) ?? `oid ${o}`).sort() };
  }

  // Relations: tables, views, materialized views, sequences (not identity sequences).
  const rels = await query<{
    oid: number;
    schema: string;
    name: string;
    relkind: string;
    persistence: string;
    owner: string;
    acl: string[];
    acl_default: string[];
    comment: string | null;
    options: string[] | null;
    partkey: string | null;
    parent: number | null;
    bound: string | null;
    inherits: number[] | null;
    rls: boolean;
    force_rls: boolean;
    populated: boolean;
    viewdef: string | null;
    row_type: number;
    seq: string | null;
    owned_by_rel: number | null;
    owned_by_col: number | null;
    identity_seq: boolean;
  }>(
    c,
    `SELECT k.oid::int AS oid, n.nspname AS schema, k.relname AS name, k.relkind::text AS relkind, k.relpersistence::text AS persistence,
            pg_get_userbyid(k.relowner) AS owner,
            ${aclArray("k.relacl", "CASE WHEN k.relkind = 'S' THEN 's' ELSE 'r' END", "k.relowner")} AS acl,
            ${aclDefaultArray("CASE WHEN k.relkind = 'S' THEN 's' ELSE 'r' END", "k.relowner")} AS acl_default,
            ${comment("pg_class", "k.oid")} AS comment, k.reloptions AS options,
            CASE WHEN k.relkind = 'p' THEN pg_get_partkeydef(k.oid) END AS partkey,
            (SELECT i.inhparent::int FROM pg_inherits i WHERE i.inhrelid = k.oid AND k.relispartition) AS parent,
            CASE WHEN k.relispartition THEN pg_get_expr(k.relpartbound, k.oid) END AS bound,
            (SELECT array_agg(i.inhparent::int ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = k.oid AND NOT k.relispartition) AS inherits,
            k.relrowsecurity AS rls, k.relforcerowsecurity AS force_rls, k.relispopulated AS populated,
            CASE WHEN k.relkind IN ('v', 'm') THEN pg_get_viewdef(k.oid) END AS viewdef,
            k.reltype::int AS row_type,
            CASE WHEN k.relkind = 'S' THEN (SELECT 'AS ' || format_type(s.seqtypid, NULL) || ' INCREMENT BY ' || s.seqincrement || ' MINVALUE ' || s.seqmin || ' MAXVALUE ' || s.seqmax
                                                  || ' START WITH ' || s.seqstart || ' CACHE ' || s.seqcache || CASE WHEN s.seqcycle THEN ' CYCLE' ELSE ' NO CYCLE' END
                                               FROM pg_sequence s WHERE s.seqrelid = k.oid) END AS seq,
            (SELECT d.refobjid::int FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = k.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a' AND k.relkind = 'S' LIMIT 1) AS owned_by_rel,
            (SELECT d.refobjsubid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = k.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a' AND k.relkind = 'S' LIMIT 1) AS owned_by_col,
            EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = k.oid AND d.deptype = 'i' AND k.relkind = 'S') AS identity_seq
       FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
      WHERE k.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND ${USER_NS} AND ${notExtensionMember("pg_class", "k.oid")}`,
  );
  const relIds = new Map<number, string>();
  const sequenceValues: Array<{ id: string; schema: string; name: string; ownedBy: string | null }> = [];
  for (const r of rels.rows) {
    const name = `${displayName(r.schema)}.${displayName(r.name)}`;
    const common = { owner: mapRole(r.owner), acl: mapAcl(r.acl), aclDefault: mapAcl(r.acl_default), comment: r.comment };
    if (r.relkind === "S") {
      if (r.identity_seq) continue;
      const id = `sequence ${name}`;
      add({ kind: "sequence", id, schema: r.schema, name: r.name, options: r.seq ?? "", ownedBy: null, lastValue: null, isCalled: false, ...common }, `pg_class:${r.oid}:0`);
      sequenceValues.push({ id, schema: r.schema, name: r.name, ownedBy: r.owned_by_rel === null ? null : `pg_class:${r.owned_by_rel}:${r.owned_by_col ?? 0}` });
      relIds.set(r.oid, id);
      continue;
    }
    if (r.relkind === "v" || r.relkind === "m") {
      const kind = r.relkind === "v" ? "view" : "matview";
      const id = `${kind} ${name}`;
      add({ kind, id, schema: r.schema, name: r.name, definition: (r.viewdef ?? "").trim(), options: [...(r.options ?? [])].sort(), populated: r.relkind === "m" ? r.populated : true, ...common }, `pg_class:${r.oid}:0`, `pg_type:${r.row_type}:0`);
      relIds.set(r.oid, id);
      continue;
    }
    const id = `table ${name}`;
    const t: TableObject = {
      kind: "table",
      id,
      schema: r.schema,
      name: r.name,
      relkind: r.relkind === "p" ? "partitioned" : r.relkind === "f" ? "foreign" : "table",
      unlogged: r.persistence === "u",
      partitionKey: r.partkey,
      partitionOf: r.parent === null ? null : { parent: String(r.parent), bound: r.bound ?? "" },
      inherits: (r.inherits ?? []).map(String),
      options: [...(r.options ?? [])].sort(),
      rowSecurity: r.rls,
      forceRowSecurity: r.force_rls,
      ...common,
    };
    add(t, `pg_class:${r.oid}:0`, `pg_type:${r.row_type}:0`);
    relIds.set(r.oid, id);
  }
  // Parents were read as oids: now that every relation has its id, use the ids.
  for (const [id, o] of Object.entries(objects)) {
    if (o.kind !== "table") continue;
    const idOf = (oid: string) => relIds.get(Number(oid)) ?? `oid ${oid}`;
    objects[id] = { ...o, partitionOf: o.partitionOf === null ? null : { parent: idOf(o.partitionOf.parent), bound: o.partitionOf.bound }, inherits: o.inherits.map(idOf) };
  }

  // Columns of tables (own columns only: inherited ones follow their parent) and of composite-free relations.
  const cols = await query<{
    relid: number;
    attnum: number;
    name: string;
    type: string;
    collation: string | null;
    not_null: boolean;
    default: string | null;
    attrdef: number | null;
    generated: string;
    identity: string;
    acl: string[];
    comment: string | null;
  }>(
    c,
    `SELECT a.attrelid::int AS relid, a.attnum::int AS attnum, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                 THEN (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace WHERE co.oid = a.attcollation) END AS collation,
            a.attnotnull AS not_null, pg_get_expr(ad.adbin, ad.adrelid) AS default, ad.oid::int AS attrdef, a.attgenerated::text AS generated, a.attidentity::text AS identity,
            ${aclArray("a.attacl", "'c'", "k.relowner")} AS acl, ${comment("pg_class", "a.attrelid", "a.attnum")} AS comment
       FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      WHERE a.attrelid = ANY($1::oid[]) AND k.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND a.attislocal`,
    [[...relIds.entries()].filter(([, id]) => id.startsWith("table ")).map(([oid]) => oid)],
  );
  for (const r of cols.rows) {
    const table = relIds.get(r.relid)!;
    const id = `column ${table.slice("table ".length)}.${displayName(r.name)}`;
    const generated = r.generated === "s";
    const col: ColumnObject = {
      kind: "column",
      id,
      table,
      name: r.name,
      type: r.type,
      collation: r.collation,
      notNull: r.not_null,
      default: generated ? null : r.default,
      generated: generated ? r.default : null,
      identity: r.identity === "a" ? "always" : r.identity === "d" ? "by default" : null,
      position: r.attnum,
      acl: mapAcl(r.acl),
      aclDefault: [],
      comment: r.comment,
    };
    add(col, `pg_class:${r.relid}:${r.attnum}`, ...(r.attrdef === null ? [] : [`pg_attrdef:${r.attrdef}:0`]));
  }

  // Comments and privileges on the columns of views and materialized views (dropping a view drops them).
  const viewCols = await query<{ relid: number; name: string; acl: string[]; comment: string | null }>(
    c,
    `SELECT a.attrelid::int AS relid, a.attname AS name, ${aclArray("a.attacl", "'c'", "k.relowner")} AS acl, ${comment("pg_class", "a.attrelid", "a.attnum")} AS comment
       FROM pg_attribute a JOIN pg_class k ON k.oid = a.attrelid
      WHERE a.attrelid = ANY($1::oid[]) AND k.relkind IN ('v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
        AND (a.attacl IS NOT NULL OR ${comment("pg_class", "a.attrelid", "a.attnum")} IS NOT NULL)
      ORDER BY a.attrelid, a.attname`,
    [[...relIds.entries()].filter(([, id]) => id.startsWith("view ") || id.startsWith("matview ")).map(([oid]) => oid)],
  );
  for (const r of viewCols.rows) {
    const id = relIds.get(r.relid)!;
    const v = objects[id];
    if (v?.kind !== "view" && v?.kind !== "matview") continue;
    objects[id] = { ...v, columns: { ...v.columns, [r.name]: { comment: r.comment, acl: mapAcl(r.acl) } } };
  }

  // Sequence values, read from the sequences themselves, and the columns owning them.
  for (const s of sequenceValues) {
    const v = await query<{ last_value: string; is_called: boolean }>(c, `SELECT last_value::text, is_called FROM ${qualifiedName(s.schema, s.name)}`);
    const o = objects[s.id];
    const ownedBy = s.ownedBy === null ? null : (byAddress.get(s.ownedBy) ?? null);
    if (o?.kind === "sequence") objects[s.id] = { ...o, ownedBy, lastValue: v.rows[0]?.last_value ?? null, isCalled: v.rows[0]?.is_called ?? false };
  }

  // Constraints of tables (not those inherited from a parent or partitioned parent, not NOT NULL).
  const cons = await query<{ oid: number; relid: number; name: string; contype: string; def: string; index: number; comment: string | null }>(
    c,
    `SELECT k.oid::int AS oid, k.conrelid::int AS relid, k.conname AS name, k.contype::text AS contype, pg_get_constraintdef(k.oid) AS def, k.conindid::int AS index,
            ${comment("pg_constraint", "k.oid")} AS comment
       FROM pg_constraint k WHERE k.conrelid = ANY($1::oid[]) AND k.contype IN ('c', 'f', 'p', 'u', 'x') AND k.conislocal AND k.conparentid = 0`,
    [[...relIds.keys()]],
  );
  const CONTYPE = { c: "check", f: "foreign key", p: "primary key", u: "unique", x: "exclusion" } as const;
  for (const r of cons.rows) {
    const on = relIds.get(r.relid)!;
    const id = `constraint ${on.slice(on.indexOf(" ") + 1)}.${displayName(r.name)}`;
    const addresses = [`pg_constraint:${r.oid}:0`];
    if (r.contype !== "f" && r.index !== 0) addresses.push(`pg_class:${r.index}:0`);
    add({ kind: "constraint", id, on, name: r.name, contype: CONTYPE[r.contype as keyof typeof CONTYPE], definition: r.def, comment: r.comment }, ...addresses);
  }

  // Indexes not made by a constraint, and not a partition's copy of its parent's index.
  const idx = await query<{ oid: number; relid: number; schema: string; name: string; def: string; partitioned: boolean; comment: string | null }>(
    c,
    `SELECT i.indexrelid::int AS oid, i.indrelid::int AS relid, n.nspname AS schema, x.relname AS name, pg_get_indexdef(i.indexrelid) AS def, x.relkind = 'I' AS partitioned,
            ${comment("pg_class", "i.indexrelid")} AS comment
       FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace n ON n.oid = x.relnamespace
      WHERE i.indrelid = ANY($1::oid[])
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x') AND k.conrelid = i.indrelid)
        AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)`,
    [[...relIds.keys()]],
  );
  for (const r of idx.rows) {
    // A partitioned table's index is defined ON ONLY the parent in pg_get_indexdef; created plainly it cascades to the partitions, as it did.
    const definition = r.partitioned ? r.def.replace(" ON ONLY ", " ON ") : r.def;
    add({ kind: "index", id: `index ${displayName(r.schema)}.${displayName(r.name)}`, on: relIds.get(r.relid)!, name: r.name, definition, comment: r.comment }, `pg_class:${r.oid}:0`);
  }

  // Triggers (user ones; not a partition's clone of its parent's).
  const trg = await query<{ oid: number; relid: number; name: string; def: string; enabled: string; comment: string | null }>(
    c,
    `SELECT g.oid::int AS oid, g.tgrelid::int AS relid, g.tgname AS name, pg_get_triggerdef(g.oid) AS def, g.tgenabled::text AS enabled, ${comment("pg_trigger", "g.oid")} AS comment
       FROM pg_trigger g WHERE g.tgrelid = ANY($1::oid[]) AND NOT g.tgisinternal AND g.tgparentid = 0`,
    [[...relIds.keys()]],
  );
  for (const r of trg.rows) {
    const on = relIds.get(r.relid)!;
    add({ kind: "trigger", id: `trigger ${on.slice(on.indexOf(" ") + 1)}.${displayName(r.name)}`, on, name: r.name, definition: r.def, enabled: enabled(r.enabled), comment: r.comment }, `pg_trigger:${r.oid}:0`);
  }

  // Rules (a view's _RETURN rule is the view itself).
  const rules = await query<{ oid: number; relid: number; name: string; def: string; enabled: string; comment: string | null }>(
    c,
    `SELECT w.oid::int AS oid, w.ev_class::int AS relid, w.rulename AS name, pg_get_ruledef(w.oid) AS def, w.ev_enabled::text AS enabled, ${comment("pg_rewrite", "w.oid")} AS comment
       FROM pg_rewrite w WHERE w.ev_class = ANY($1::oid[])`,
    [[...relIds.keys()]],
  );
  for (const r of rules.rows) {
    const on = relIds.get(r.relid)!;
    if (r.name === "_RETURN") {
      byAddress.set(`pg_rewrite:${r.oid}:0`, on);
      continue;
    }
    add({ kind: "rule", id: `rule ${on.slice(on.indexOf(" ") + 1)}.${displayName(r.name)}`, on, name: r.name, definition: r.def.trim().replace(/;$/, ""), enabled: enabled(r.enabled), comment: r.comment }, `pg_rewrite:${r.oid}:0`);
  }

  // Row-level security policies.
  const pols = await query<{ oid: number; relid: number; name: string; permissive: boolean; cmd: string; roles: string[]; using: string | null; check: string | null; comment: string | null }>(
    c,
    `SELECT p.oid::int AS oid, p.polrelid::int AS relid, p.polname AS name, p.polpermissive AS permissive, p.polcmd::text AS cmd,
            ARRAY(SELECT CASE WHEN r = 0 THEN '' ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) r)::text[] AS roles,
            pg_get_expr(p.polqual, p.polrelid) AS using, pg_get_expr(p.polwithcheck, p.polrelid) AS check, ${comment("pg_policy", "p.oid")} AS comment
       FROM pg_policy p WHERE p.polrelid = ANY($1::oid[])`,
    [[...relIds.keys()]],
  );
  const CMD = { "*": "ALL", r: "SELECT", a: "INSERT", w: "UPDATE", d: "DELETE" } as const;
  for (const r of pols.rows) {
    const on = relIds.get(r.relid)!;
    add(
      {
        kind: "policy",
        id: `policy ${on.slice(on.indexOf(" ") + 1)}.${displayName(r.name)}`,
        on,
        name: r.name,
        permissive: r.permissive,
        command: CMD[r.cmd as keyof typeof CMD] ?? "ALL",
        roles: [...new Set(r.roles.map(mapRole))].sort(),
        using: r.using,
        withCheck: r.check,
        comment: r.comment,
      },
      `pg_policy:${r.oid}:0`,
    );
  }

  // Casts and operators created by users (not built in, not an extension's).
  for (const r of (
    await query<{ oid: number; source: string; target: string; def: string; comment: string | null }>(
      c,
      `SELECT k.oid::int AS oid, format_type(k.castsource, NULL) AS source, format_type(k.casttarget, NULL) AS target,
              'CREATE CAST (' || format_type(k.castsource, NULL) || ' AS ' || format_type(k.casttarget, NULL) || ') '
              || CASE k.castmethod WHEN 'f' THEN 'WITH FUNCTION ' || k.castfunc::regprocedure::text WHEN 'i' THEN 'WITH INOUT' ELSE 'WITHOUT FUNCTION' END
              || CASE k.castcontext WHEN 'a' THEN ' AS ASSIGNMENT' WHEN 'i' THEN ' AS IMPLICIT' ELSE '' END AS def,
              ${comment("pg_cast", "k.oid")} AS comment
         FROM pg_cast k WHERE k.oid >= 16384 AND ${notExtensionMember("pg_cast", "k.oid")}`,
    )
  ).rows) {
    add({ kind: "cast", id: `cast (${r.source} AS ${r.target})`, source: r.source, target: r.target, definition: r.def, comment: r.comment }, `pg_cast:${r.oid}:0`);
  }
  for (const r of (
    await query<{ oid: number; schema: string; name: string; left: string | null; right: string | null; def: string; owner: string; comment: string | null }>(
      c,
      `SELECT o.oid::int AS oid, n.nspname AS schema, o.oprname AS name,
              CASE WHEN o.oprleft <> 0 THEN format_type(o.oprleft, NULL) END AS left, CASE WHEN o.oprright <> 0 THEN format_type(o.oprright, NULL) END AS right,
              'CREATE OPERATOR ' || quote_ident(n.nspname) || '.' || o.oprname || ' ('
              || concat_ws(', ', CASE WHEN o.oprleft <> 0 THEN 'LEFTARG = ' || format_type(o.oprleft, NULL) END,
                                 CASE WHEN o.oprright <> 0 THEN 'RIGHTARG = ' || format_type(o.oprright, NULL) END,
                                 'FUNCTION = ' || o.oprcode::regproc::text,
                                 CASE WHEN o.oprcom <> 0 THEN 'COMMUTATOR = OPERATOR(' || (SELECT quote_ident(cn.nspname) || '.' || co.oprname FROM pg_operator co JOIN pg_namespace cn ON cn.oid = co.oprnamespace WHERE co.oid = o.oprcom) || ')' END,
                                 CASE WHEN o.oprnegate <> 0 THEN 'NEGATOR = OPERATOR(' || (SELECT quote_ident(cn.nspname) || '.' || co.oprname FROM pg_operator co JOIN pg_namespace cn ON cn.oid = co.oprnamespace WHERE co.oid = o.oprnegate) || ')' END,
                                 CASE WHEN o.oprrest <> 0 THEN 'RESTRICT = ' || o.oprrest::regproc::text END,
                                 CASE WHEN o.oprjoin <> 0 THEN 'JOIN = ' || o.oprjoin::regproc::text END,
                                 CASE WHEN o.oprcanhash THEN 'HASHES' END, CASE WHEN o.oprcanmerge THEN 'MERGES' END) || ')' AS def,
              pg_get_userbyid(o.oprowner) AS owner, ${comment("pg_operator", "o.oid")} AS comment
         FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE ${USER_NS} AND ${notExtensionMember("pg_operator", "o.oid")}`,
    )
  ).rows) {
    add(
      { kind: "operator", id: `operator ${displayName(r.schema)}.${r.name}(${r.left ?? "NONE"}, ${r.right ?? "NONE"})`, schema: r.schema, name: r.name, left: r.left, right: r.right, definition: r.def, owner: mapRole(r.owner), comment: r.comment },
      `pg_operator:${r.oid}:0`,
    );
  }

  // Event triggers (database-wide).
  for (const r of (
    await query<{ oid: number; name: string; def: string; enabled: string; owner: string; comment: string | null }>(
      c,
      `SELECT e.oid::int AS oid, e.evtname AS name,
              'CREATE EVENT TRIGGER ' || quote_ident(e.evtname) || ' ON ' || quote_ident(e.evtevent)
              || CASE WHEN e.evttags IS NOT NULL THEN ' WHEN TAG IN (' || (SELECT string_agg(quote_literal(t), ', ') FROM unnest(e.evttags) t) || ')' ELSE '' END
              || ' EXECUTE FUNCTION ' || e.evtfoid::regproc::text || '()' AS def,
              e.evtenabled::text AS enabled, pg_get_userbyid(e.evtowner) AS owner, ${comment("pg_event_trigger", "e.oid")} AS comment
         FROM pg_event_trigger e WHERE ${notExtensionMember("pg_event_trigger", "e.oid")}`,
    )
  ).rows) {
    add({ kind: "event_trigger", id: `event_trigger ${displayName(r.name)}`, name: r.name, definition: r.def, enabled: enabled(r.enabled), owner: mapRole(r.owner), comment: r.comment }, `pg_event_trigger:${r.oid}:0`);
  }

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
    const o: DefaultAclObject = { kind: "default_acl", id: `default_acl ${role}:${r.schema === null ? "*" : displayName(r.schema)}:${objtype}`, role, schema: r.schema, objtype, acl: mapAcl(r.acl), aclDefault: mapAcl(r.base) };
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
  const resolve = (cls: string, oid: number, sub: number): string | undefined => byAddress.get(`${cls}:${oid}:${sub}`) ?? (sub !== 0 ? byAddress.get(`${cls}:${oid}:0`) : undefined);
  const dependsOn: Record<string, Set<string>> = {};
  for (const d of deps.rows) {
    const from = resolve(d.cls, d.objid, d.objsubid);
    const to = resolve(d.refcls, d.refobjid, d.refobjsubid);
    if (from === undefined || to === undefined || from === to) continue;
    (dependsOn[from] ??= new Set()).add(to);
  }
  // Table-level objects depend on their table; columns on their table.
  for (const o of Object.values(objects)) {
    const parent = o.kind === "column" ? o.table : o.kind === "constraint" || o.kind === "index" || o.kind === "trigger" || o.kind === "rule" || o.kind === "policy" ? o.on : undefined;
    if (parent !== undefined && objects[parent] !== undefined) (dependsOn[o.id] ??= new Set()).add(parent);
  }
  return { objects, dependsOn: Object.fromEntries(Object.entries(dependsOn).map(([k, v]) => [k, [...v].sort()])) };
}

/** The functions (not built in) an object calls, by the model's dependencies. */
export function callsOf(model: CatalogModel, id: string): string[] {
  return (model.dependsOn[id] ?? []).filter((d) => d.startsWith("function "));
}
