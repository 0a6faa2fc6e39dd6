/**
 * Finding what the connected role lacks in production, one kind of need at
 * a time: ownership of the airlock schema and its tables, privileges on the
 * tables whose rows a promotion writes and its rollback restores, ownership
 * of the tables whose triggers and rules are paused, and the sequences
 * production's catalog model reads or a promotion moves. Each finder returns
 * the gaps with the GRANT that closes them; privileges.ts decides which a
 * step needs and refuses it.
 */
import type pg from "pg";
import type { Diff } from "../diff/types.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { feedsOfTables } from "../apply/sequence-feeds.ts";
import { qualified } from "../pg/table-names.ts";

/** One thing the role lacks, why a step needs it, and what an administrator runs to give it. */
export interface PrivilegeGap {
  /** "DELETE on table public.gallery_images", "ownership of table public.bookings". */
  readonly need: string;
  readonly why: string;
  readonly grant: string;
}

/** The role this connection acts as. */
export async function currentRole(c: pg.ClientBase): Promise<string> {
  return (await query<{ u: string }>(c, "SELECT current_user AS u")).rows[0]!.u;
}

/** What the role lacks to own and use the airlock schema (the promote and rollback role owns it). */
export async function airlockGaps(c: pg.ClientBase, role: string): Promise<PrivilegeGap[]> {
  const r = await query<{ exists: boolean; owner: string | null; owns: boolean; can_create: boolean; db: string }>(
    c,
    `SELECT n.oid IS NOT NULL AS exists, pg_catalog.pg_get_userbyid(n.nspowner) AS owner,
            coalesce(pg_catalog.pg_has_role(n.nspowner, 'USAGE'), false) AS owns,
            pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS can_create, pg_catalog.current_database() AS db
       FROM (SELECT 1) x LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'airlock'`,
  );
  const s = r.rows[0]!;
  const to = quoteIdent(role);
  if (!s.exists) {
    if (s.can_create) return [];
    return [
      {
        need: `CREATE on database ${s.db}`,
        why: "the first promotion creates the airlock schema (promotions, row images, audit log)",
        grant: `CREATE SCHEMA airlock AUTHORIZATION ${to}`,
      },
    ];
  }
  const gaps: PrivilegeGap[] = [];
  if (!s.owns)
    gaps.push({
      need: `ownership of schema airlock (owned by ${s.owner})`,
      why: "promotions and rollbacks keep their records and saved data there",
      grant: `ALTER SCHEMA airlock OWNER TO ${to}`,
    });
  const tables = await query<{ name: string; owner: string }>(
    c,
    `SELECT t.relname AS name, pg_catalog.pg_get_userbyid(t.relowner) AS owner FROM pg_catalog.pg_class t JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'airlock' AND t.relkind IN ('r', 'p') AND NOT pg_catalog.pg_has_role(t.relowner, 'USAGE') ORDER BY 1`,
  );
  for (const t of tables.rows) {
    gaps.push({
      need: `ownership of table airlock.${t.name} (owned by ${t.owner})`,
      why: "promote and rollback write and alter Airlock's own tables",
      grant: `ALTER TABLE airlock.${quoteIdent(t.name)} OWNER TO ${to}`,
    });
  }
  return gaps;
}

/** One table privilege a step needs. */
export interface TableNeed {
  /** Qualified, quoted. */
  readonly table: string;
  readonly privilege: "SELECT" | "INSERT" | "UPDATE" | "DELETE";
  readonly why: string;
}

/** The needs the role lacks, among tables that exist (a table the diff creates will be the role's own). */
export async function tableGaps(c: pg.ClientBase, role: string, needs: readonly TableNeed[]): Promise<PrivilegeGap[]> {
  if (needs.length === 0) return [];
  const r = await query<{ i: number; name: string }>(
    c,
    `SELECT x.i::int AS i, pg_catalog.to_regclass(x.t)::text AS name FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(t, p, i)
      WHERE pg_catalog.to_regclass(x.t) IS NOT NULL AND NOT pg_catalog.has_table_privilege(pg_catalog.to_regclass(x.t), x.p)`,
    [needs.map((n) => n.table), needs.map((n) => n.privilege)],
  );
  const gaps = r.rows.map((row) => {
    const n = needs[row.i - 1]!;
    return { need: `${n.privilege} on table ${n.table}`, why: n.why, grant: `GRANT ${n.privilege} ON TABLE ${n.table} TO ${quoteIdent(role)}` };
  });
  // Table privileges are of no use without USAGE on the table's schema.
  const schemas = await query<{ s: string }>(
    c,
    `SELECT DISTINCT n.nspname AS s FROM unnest($1::text[]) AS x(t) JOIN pg_catalog.pg_class k ON k.oid = pg_catalog.to_regclass(x.t)
       JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace WHERE NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE') ORDER BY 1`,
    [[...new Set(needs.map((n) => n.table))]],
  );
  const usage = schemas.rows.map((x) => ({
    need: `USAGE on schema ${quoteIdent(x.s)}`,
    why: "the diff's tables are in it",
    grant: `GRANT USAGE ON SCHEMA ${quoteIdent(x.s)} TO ${quoteIdent(role)}`,
  }));
  return [...usage, ...gaps];
}

/** Tables (and their partitions and children) with enabled user triggers or rules the role does not own. */
export async function pauseGaps(c: pg.ClientBase, role: string, tables: readonly string[], why: string): Promise<PrivilegeGap[]> {
  if (tables.length === 0) return [];
  const r = await query<{ tbl: string; owner: string; what: string }>(
    c,
    `WITH RECURSIVE rel(oid) AS (
       SELECT pg_catalog.to_regclass(t) FROM unnest($1::text[]) AS t WHERE pg_catalog.to_regclass(t) IS NOT NULL
       UNION SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rel ON i.inhparent = rel.oid
     )
     SELECT cl.oid::regclass::text AS tbl, pg_catalog.pg_get_userbyid(cl.relowner) AS owner,
            string_agg(x.name, ', ' ORDER BY x.name) AS what
       FROM rel JOIN pg_catalog.pg_class cl ON cl.oid = rel.oid
       JOIN (SELECT t.tgrelid AS oid, 'trigger ' || t.tgname AS name FROM pg_catalog.pg_trigger t WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
             UNION ALL
             SELECT r.ev_class, 'rule ' || r.rulename FROM pg_catalog.pg_rewrite r WHERE r.rulename <> '_RETURN' AND r.ev_enabled <> 'D') x ON x.oid = cl.oid
      WHERE NOT pg_catalog.pg_has_role(cl.relowner, 'USAGE')
      GROUP BY cl.oid, cl.relowner ORDER BY 1`,
    [tables],
  );
  return r.rows.map((x) => ({
    need: `ownership of table ${x.tbl} (owned by ${x.owner}; it has ${x.what})`,
    why,
    grant: `GRANT ${quoteIdent(x.owner)} TO ${quoteIdent(role)}`,
  }));
}

/** Sequences production's catalog model reads (all but identity and extension ones) that the role may not read. */
export async function sequenceReadGaps(c: pg.ClientBase, role: string, why: string): Promise<PrivilegeGap[]> {
  const r = await query<{ schema: string; name: string; usage: boolean }>(
    c,
    `SELECT n.nspname AS schema, s.relname AS name, pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS usage
       FROM pg_catalog.pg_class s JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
      WHERE s.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('e', 'i'))
        AND NOT (pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_sequence_privilege(s.oid, 'SELECT'))
      ORDER BY 1, 2`,
  );
  return r.rows
    .map((s) =>
      s.usage
        ? {
            need: `SELECT on sequence ${qualified(s.schema, s.name)}`,
            why,
            grant: `GRANT SELECT ON SEQUENCE ${qualified(s.schema, s.name)} TO ${quoteIdent(role)}`,
          }
        : { need: `USAGE on schema ${quoteIdent(s.schema)}`, why, grant: `GRANT USAGE ON SCHEMA ${quoteIdent(s.schema)} TO ${quoteIdent(role)}` },
    )
    .filter((g, i, all) => all.findIndex((x) => x.need === g.need) === i);
}

/** Sequences the promotion moves past the values it writes, which the role can neither own nor update. */
export async function sequenceMoveGaps(c: pg.ClientBase, role: string, diff: Pick<Diff, "tables">): Promise<PrivilegeGap[]> {
  const written = diff.tables.filter((t) => t.changes.some((ch) => ch.kind === "insert" || ch.kind === "update"));
  const feeds = (await feedsOfTables(c, written)).filter((f) => {
    const t = written.find((x) => x.schema === f.schema && x.name === f.table)!;
    return t.changes.some((ch) => (ch.kind === "insert" ? ch.row[f.column] : ch.kind === "update" ? ch.new[f.column] : null) != null);
  });
  const sequences = [...new Set(feeds.map((f) => qualified(f.seqSchema, f.seqName)))];
  if (sequences.length === 0) return [];
  const r = await query<{ s: string }>(
    c,
    `SELECT x.s FROM unnest($1::text[]) AS x(s)
      WHERE NOT pg_catalog.has_sequence_privilege(pg_catalog.to_regclass(x.s), 'UPDATE')
        AND NOT pg_catalog.pg_has_role((SELECT relowner FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass(x.s)), 'USAGE')`,
    [sequences],
  );
  return r.rows.map((x) => ({
    need: `UPDATE on sequence ${x.s}`,
    why: "the promotion moves it past the values the diff writes",
    grant: `GRANT SELECT, UPDATE ON SEQUENCE ${x.s} TO ${quoteIdent(role)}`,
  }));
}

/** Table privileges that writing and undoing these changes needs. */
export function rowNeeds(table: string, ops: { keyed: boolean; inserts: boolean; updates: boolean; deletes: boolean }): TableNeed[] {
  const out: TableNeed[] = [{ table, privilege: "SELECT", why: "promote and rollback read the rows they check and save" }];
  if (ops.keyed || ops.updates)
    out.push({
      table,
      privilege: "UPDATE",
      why: ops.updates ? "the diff updates rows, and rollback restores them" : "promote and rollback lock the rows they touch (SELECT … FOR UPDATE)",
    });
  if (ops.inserts)
    out.push(
      { table, privilege: "INSERT", why: "the diff inserts rows" },
      { table, privilege: "DELETE", why: "rollback deletes the rows this promotion inserts" },
    );
  if (ops.deletes)
    out.push(
      { table, privilege: "DELETE", why: "the diff deletes rows" },
      { table, privilege: "INSERT", why: "rollback puts the rows this promotion deletes back" },
    );
  // One entry per privilege: the first reason given.
  return out.filter((n, i) => out.findIndex((x) => x.privilege === n.privilege) === i);
}
