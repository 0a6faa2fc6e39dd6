/**
 * Reading code and types from the catalog: enums, domains, composites,
 * ranges and base types; functions, procedures and aggregates; user casts
 * and operators; event triggers. Every definition is the server's own
 * (pg_get_functiondef) or assembled from the catalog with qualified names.
 */
import { query, quoteLiteral } from "../pg/connect.ts";
import type { FunctionObject, TypeObject } from "./model.ts";
import { displayName, qualifiedName } from "./names.ts";
import { type ModelBuilder, USER_NS, aclArray, aclDefaultArray, comment, enabled, notExtensionMember } from "./read-context.ts";

/** Types, then functions, procedures and aggregates (a type's own functions are named once both are read). */
export async function readTypesAndFunctions(m: ModelBuilder): Promise<void> {
  const { c, add, mapRole, mapAcl, objects } = m;

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
      definition = [
        `CREATE DOMAIN ${qname} AS ${r.base}`,
        r.collation === null ? "" : ` COLLATE ${r.collation}`,
        r.default === null ? "" : ` DEFAULT ${r.default}`,
        r.not_null ? " NOT NULL" : "",
        ...(r.checks ?? []).map((k) => ` ${k}`),
      ].join("");
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
}

/** User casts and operators (not built in, not an extension's), and event triggers. */
export async function readCastsOperatorsAndEventTriggers(m: ModelBuilder): Promise<void> {
  const { c, add, mapRole } = m;

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
    add(
      { kind: "cast", id: `cast (${r.source} AS ${r.target})`, source: r.source, target: r.target, definition: r.def, comment: r.comment },
      `pg_cast:${r.oid}:0`,
    );
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
      {
        kind: "operator",
        id: `operator ${displayName(r.schema)}.${r.name}(${r.left ?? "NONE"}, ${r.right ?? "NONE"})`,
        schema: r.schema,
        name: r.name,
        left: r.left,
        right: r.right,
        definition: r.def,
        owner: mapRole(r.owner),
        comment: r.comment,
      },
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
    add(
      {
        kind: "event_trigger",
        id: `event_trigger ${displayName(r.name)}`,
        name: r.name,
        definition: r.def,
        enabled: enabled(r.enabled),
        owner: mapRole(r.owner),
        comment: r.comment,
      },
      `pg_event_trigger:${r.oid}:0`,
    );
  }
}
