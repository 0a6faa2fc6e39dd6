/**
 * Reading relations from the catalog: tables (partitions, inheritance,
 * options, row-level security), views and materialized views, sequences and
 * their values, and what hangs off a table: columns, constraints, indexes,
 * triggers, rules and row-level security policies.
 */
import { query } from "../pg/connect.ts";
import type { ColumnObject, TableObject } from "./model.ts";
import { displayName, qualifiedName } from "./names.ts";
import { type ModelBuilder, USER_NS, aclArray, aclDefaultArray, comment, enabled, notExtensionMember } from "./read-context.ts";

/** Relations and the objects on them. */
export async function readRelations(m: ModelBuilder): Promise<void> {
  const { c, add, mapRole, mapAcl, objects, byAddress } = m;

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
      add(
        { kind: "sequence", id, schema: r.schema, name: r.name, options: r.seq ?? "", ownedBy: null, lastValue: null, isCalled: false, ...common },
        `pg_class:${r.oid}:0`,
      );
      sequenceValues.push({
        id,
        schema: r.schema,
        name: r.name,
        ownedBy: r.owned_by_rel === null ? null : `pg_class:${r.owned_by_rel}:${r.owned_by_col ?? 0}`,
      });
      relIds.set(r.oid, id);
      continue;
    }
    if (r.relkind === "v" || r.relkind === "m") {
      const kind = r.relkind === "v" ? "view" : "matview";
      const id = `${kind} ${name}`;
      add(
        {
          kind,
          id,
          schema: r.schema,
          name: r.name,
          definition: (r.viewdef ?? "").trim(),
          options: [...(r.options ?? [])].sort(),
          populated: r.relkind === "m" ? r.populated : true,
          ...common,
        },
        `pg_class:${r.oid}:0`,
        `pg_type:${r.row_type}:0`,
      );
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
    objects[id] = {
      ...o,
      partitionOf: o.partitionOf === null ? null : { parent: idOf(o.partitionOf.parent), bound: o.partitionOf.bound },
      inherits: o.inherits.map(idOf),
    };
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
    add(
      { kind: "index", id: `index ${displayName(r.schema)}.${displayName(r.name)}`, on: relIds.get(r.relid)!, name: r.name, definition, comment: r.comment },
      `pg_class:${r.oid}:0`,
    );
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
    add(
      {
        kind: "trigger",
        id: `trigger ${on.slice(on.indexOf(" ") + 1)}.${displayName(r.name)}`,
        on,
        name: r.name,
        definition: r.def,
        enabled: enabled(r.enabled),
        comment: r.comment,
      },
      `pg_trigger:${r.oid}:0`,
    );
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
    add(
      {
        kind: "rule",
        id: `rule ${on.slice(on.indexOf(" ") + 1)}.${displayName(r.name)}`,
        on,
        name: r.name,
        definition: r.def.trim().replace(/;$/, ""),
        enabled: enabled(r.enabled),
        comment: r.comment,
      },
      `pg_rewrite:${r.oid}:0`,
    );
  }

  // Row-level security policies.
  const pols = await query<{
    oid: number;
    relid: number;
    name: string;
    permissive: boolean;
    cmd: string;
    roles: string[];
    using: string | null;
    check: string | null;
    comment: string | null;
  }>(
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
}
