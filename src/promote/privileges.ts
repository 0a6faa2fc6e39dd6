/**
 * What the role that promotes, rolls back or audits must be allowed to do
 * in production, checked before anything changes.
 *
 * A promotion is refused up front when the connected role could not also
 * roll it back: rollback runs as the role that promoted, and a promotion
 * that only a stronger role can undo is not reversible by Airlock itself.
 * What rollback needs, measured on PostgreSQL 15:
 * - the `airlock` schema and every table in it owned by the role (it
 *   creates them on the first promotion, alters them as Airlock evolves,
 *   and keeps saved data there; creating the schema needs CREATE on the
 *   database once);
 * - on every table the diff writes rows to: SELECT, and UPDATE for tables
 *   with a key (their rows are locked FOR UPDATE to detect changes since),
 *   UPDATE where rows are updated, INSERT and DELETE where rows are inserted
 *   or deleted (rollback deletes the one and puts the other back);
 * - ownership (or membership in the owner) of every table among those, and
 *   their partitions and children, with enabled user triggers or rules, and
 *   of every table the diff adds a trigger or rule to: pausing them
 *   (`ALTER TABLE … DISABLE TRIGGER`) and dropping them need the owner;
 * - CREATE on the schema of every object the diff drops or recreates, and
 *   of every table it drops a column from that is not its last: rollback
 *   creates those again (a table rebuilt to put the column back in place,
 *   with the views over it and the foreign keys into it, whose owners and
 *   schemas the role then needs too);
 * - SELECT on every sequence (rollback reads production's catalog model,
 *   sequence positions included) and UPDATE on those the promotion moves.
 * Everything else a promotion's DDL needs (ownership of what it alters)
 * is needed the same way by its reverse: a role without it fails the
 * promotion itself, inside its transaction, with the privilege named
 * (src/pg/privilege-error.ts).
 *
 * `airlock audit` only reads: USAGE on the airlock schema and SELECT on
 * `airlock.audit_log` and `airlock.audit_head`, never the row images.
 */
import type pg from "pg";
import type { Diff, SchemaChangeRecord } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { STEP_ROLES } from "../pg/privilege-error.ts";
import { feedsOfTables } from "../apply/sequence-feeds.ts";
import { qualified } from "../pg/table-names.ts";

/** One thing the role lacks, why a step needs it, and what an administrator runs to give it. */
export interface PrivilegeGap {
  /** "DELETE on table public.gallery_images", "ownership of table public.bookings". */
  readonly need: string;
  readonly why: string;
  readonly grant: string;
}

async function currentRole(c: pg.ClientBase): Promise<string> {
  return (await query<{ u: string }>(c, "SELECT current_user AS u")).rows[0]!.u;
}

/** What the role lacks to own and use the airlock schema (the promote and rollback role owns it). */
async function airlockGaps(c: pg.ClientBase, role: string): Promise<PrivilegeGap[]> {
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
interface TableNeed {
  /** Qualified, quoted. */
  readonly table: string;
  readonly privilege: "SELECT" | "INSERT" | "UPDATE" | "DELETE";
  readonly why: string;
}

/** The needs the role lacks, among tables that exist (a table the diff creates will be the role's own). */
async function tableGaps(c: pg.ClientBase, role: string, needs: readonly TableNeed[]): Promise<PrivilegeGap[]> {
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
async function pauseGaps(c: pg.ClientBase, role: string, tables: readonly string[], why: string): Promise<PrivilegeGap[]> {
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
async function sequenceReadGaps(c: pg.ClientBase, role: string, why: string): Promise<PrivilegeGap[]> {
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
async function sequenceMoveGaps(c: pg.ClientBase, role: string, diff: Pick<Diff, "tables">): Promise<PrivilegeGap[]> {
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

/** The identifiers of a catalog id after its kind ("trigger public.\"My T\".trg" → public, My T, trg); a function's arguments cut off. */
export function idNames(id: string): string[] {
  const rest = id.slice(id.indexOf(" ") + 1);
  const names: string[] = [];
  let i = 0;
  while (i < rest.length) {
    if (rest[i] === '"') {
      let j = i + 1;
      let name = "";
      while (j < rest.length) {
        if (rest[j] === '"' && rest[j + 1] === '"') {
          name += '"';
          j += 2;
        } else if (rest[j] === '"') break;
        else name += rest[j++];
      }
      names.push(name);
      i = j + 1;
    } else {
      const m = /^[^."(]*/.exec(rest.slice(i))![0];
      names.push(m);
      i += m.length;
    }
    if (rest[i] !== ".") break;
    i++;
  }
  return names;
}

const SCHEMA_OBJECTS = new Set(["table", "view", "matview", "sequence", "function", "type", "operator"]);

/** What a rollback of these schema changes needs beyond what the promotion's own DDL needs. */
async function schemaChangeGaps(c: pg.ClientBase, role: string, changes: readonly SchemaChangeRecord[]): Promise<PrivilegeGap[]> {
  const to = quoteIdent(role);
  const triggered = new Set<string>();
  const rebuilt = new Set<string>();
  const recreatedIn = new Map<string, string[]>();
  const recreates = (schema: string, why: string) => recreatedIn.set(schema, [...(recreatedIn.get(schema) ?? []), why]);
  let dropsSchema: string | undefined;
  for (const ch of changes) {
    const names = idNames(ch.id);
    if ((ch.kind === "trigger" || ch.kind === "rule") && names.length >= 3) triggered.add(qualified(names[0]!, names[1]!));
    const undone = ch.action === "drop" || ch.action === "recreate";
    if (undone && SCHEMA_OBJECTS.has(ch.kind) && names[0] !== undefined) recreates(names[0], `rollback creates ${ch.id} again`);
    if (undone && ch.kind === "schema") dropsSchema = ch.id;
    if (undone && ch.kind === "column" && names.length >= 3) {
      // A column that is not its table's last comes back in place only by rebuilding the table.
      const last = await query<{ last: boolean }>(
        c,
        `SELECT a.attname = $2 AS last FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum DESC LIMIT 1`,
        [qualified(names[0]!, names[1]!), names[2]!],
      );
      if (last.rows[0]?.last === false) {
        recreates(names[0]!, `rollback rebuilds ${qualified(names[0]!, names[1]!)} to put ${ch.id} back in its place`);
        rebuilt.add(qualified(names[0]!, names[1]!));
      }
    }
  }
  const gaps: PrivilegeGap[] = [];
  if (
    dropsSchema !== undefined &&
    !(await query<{ ok: boolean }>(c, "SELECT pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE') AS ok")).rows[0]!.ok
  ) {
    gaps.push({
      need: "CREATE on this database",
      why: `rollback creates ${dropsSchema} again`,
      grant: `GRANT CREATE ON DATABASE ${quoteIdent((await query<{ d: string }>(c, "SELECT pg_catalog.current_database() AS d")).rows[0]!.d)} TO ${to}`,
    });
  }
  if (recreatedIn.size > 0) {
    const schemas = [...recreatedIn.keys()];
    const r = await query<{ s: string }>(
      c,
      `SELECT n.nspname AS s FROM pg_catalog.pg_namespace n WHERE n.nspname = ANY($1::text[]) AND NOT pg_catalog.has_schema_privilege(n.oid, 'CREATE') ORDER BY 1`,
      [schemas],
    );
    for (const x of r.rows)
      gaps.push({
        need: `CREATE on schema ${quoteIdent(x.s)}`,
        why: recreatedIn.get(x.s)!.join("; "),
        grant: `GRANT CREATE ON SCHEMA ${quoteIdent(x.s)} TO ${to}`,
      });
  }
  if (rebuilt.size > 0) {
    // A rebuilt table's dependents go and come back with it: views over it, and foreign keys into it from other tables.
    const r = await query<{ rel: string; owner: string; owns: boolean; schema: string; can_create: boolean; view: boolean; of: string }>(
      c,
      `WITH t AS (SELECT pg_catalog.to_regclass(x) AS oid FROM unnest($1::text[]) AS x WHERE pg_catalog.to_regclass(x) IS NOT NULL),
            dep AS (SELECT k.conrelid AS oid, t.oid AS of, false AS view FROM t JOIN pg_catalog.pg_constraint k ON k.confrelid = t.oid AND k.contype = 'f' AND k.conrelid <> t.oid
                    UNION SELECT w.ev_class, t.oid, true FROM t JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid AND d.classid = 'pg_rewrite'::regclass
                      JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid AND w.ev_class <> t.oid)
       SELECT DISTINCT k.oid::regclass::text AS rel, pg_catalog.pg_get_userbyid(k.relowner) AS owner, pg_catalog.pg_has_role(k.relowner, 'USAGE') AS owns,
              n.nspname AS schema, pg_catalog.has_schema_privilege(n.oid, 'CREATE') AS can_create, dep.view, dep.of::regclass::text AS of
         FROM dep JOIN pg_catalog.pg_class k ON k.oid = dep.oid JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace ORDER BY 1`,
      [[...rebuilt]],
    );
    for (const x of r.rows) {
      const why = `rollback rebuilds ${x.of}, and with it ${x.view ? `the view ${x.rel} over it` : `the foreign key from ${x.rel} into it`}`;
      if (!x.owns)
        gaps.push({ need: `ownership of ${x.view ? "view" : "table"} ${x.rel} (owned by ${x.owner})`, why, grant: `GRANT ${quoteIdent(x.owner)} TO ${to}` });
      if (x.view && !x.can_create)
        gaps.push({ need: `CREATE on schema ${quoteIdent(x.schema)}`, why, grant: `GRANT CREATE ON SCHEMA ${quoteIdent(x.schema)} TO ${to}` });
    }
  }
  if (triggered.size > 0) {
    // Whether or not the table has triggers now: the one the diff adds is paused and dropped by the rollback.
    const r = await query<{ tbl: string; owner: string }>(
      c,
      `SELECT k.oid::regclass::text AS tbl, pg_catalog.pg_get_userbyid(k.relowner) AS owner FROM unnest($1::text[]) AS x(t)
         JOIN pg_catalog.pg_class k ON k.oid = pg_catalog.to_regclass(x.t) WHERE NOT pg_catalog.pg_has_role(k.relowner, 'USAGE') ORDER BY 1`,
      [[...triggered]],
    );
    for (const x of r.rows) {
      gaps.push({
        need: `ownership of table ${x.tbl} (owned by ${x.owner})`,
        why: "the diff adds or changes a trigger or rule on it, which rollback pauses and drops: only the table's owner can",
        grant: `GRANT ${quoteIdent(x.owner)} TO ${to}`,
      });
    }
  }
  return gaps;
}

/** Table privileges that writing and undoing these changes needs. */
function rowNeeds(table: string, ops: { keyed: boolean; inserts: boolean; updates: boolean; deletes: boolean }): TableNeed[] {
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

/** The GRANTs that close the gaps, each once. */
function grants(gaps: readonly PrivilegeGap[]): string {
  return [...new Set(gaps.map((g) => `${g.grant};`))].join(" ");
}

function listGaps(gaps: readonly PrivilegeGap[]): string {
  return gaps.map((g) => `  - ${g.need}: ${g.why}`).join("\n");
}

function uniqueGaps(gaps: readonly PrivilegeGap[]): PrivilegeGap[] {
  return gaps.filter((g, i) => gaps.findIndex((x) => x.need === g.need) === i);
}

/**
 * Refuses a promotion, before anything is changed, when the connected role could not promote it and roll it
 * back: every privilege missing is named, with the GRANT that gives it.
 */
export async function checkPromotePrivileges(c: pg.ClientBase, diff: Pick<Diff, "tables" | "schemaChanges">): Promise<void> {
  const role = await currentRole(c);
  const needs = diff.tables
    .filter((t) => t.changes.length > 0)
    .flatMap((t) =>
      rowNeeds(qualified(t.schema, t.name), {
        keyed: t.key !== null,
        inserts: t.changes.some((ch) => ch.kind === "insert"),
        updates: t.changes.some((ch) => ch.kind === "update"),
        deletes: t.changes.some((ch) => ch.kind === "delete"),
      }),
    );
  const written = diff.tables.filter((t) => t.changes.length > 0).map((t) => qualified(t.schema, t.name));
  const gaps = uniqueGaps([
    ...(await airlockGaps(c, role)),
    ...(await tableGaps(c, role, needs)),
    ...(await pauseGaps(c, role, written, "promote and rollback write its rows with its triggers and rules paused, which only the table's owner can")),
    ...(await sequenceMoveGaps(c, role, diff)),
    ...(await sequenceReadGaps(c, role, "promote and rollback read production's schema, sequence positions included")),
    ...(await schemaChangeGaps(c, role, diff.schemaChanges)),
  ]);
  if (gaps.length === 0) return;
  throw new AirlockError(
    "AIRLOCK_PROMOTE_PRIVILEGES",
    `role ${role} could not promote this diff and roll it back (rollback runs as the role that promoted); nothing was changed:\n${listGaps(gaps)}`,
    {
      hint: `promote with the role it needs — ${STEP_ROLES.promote} (README "Roles and privileges"); or, if ${role} is meant to do it, as an administrator: ${grants(gaps)}`,
      exitCode: EXIT_REFUSED,
      details: { role, missing: gaps },
    },
  );
}

/**
 * Refuses a rollback, before anything is changed, when the connected role lacks what it needs (the role that
 * promoted has it: its promotion was checked for exactly this).
 */
export async function checkRollbackPrivileges(c: pg.ClientBase, promotionId: string): Promise<void> {
  const role = await currentRole(c);
  const owner =
    (await query<{ o: string | null }>(c, "SELECT pg_catalog.pg_get_userbyid(nspowner) AS o FROM pg_catalog.pg_namespace WHERE nspname = 'airlock'")).rows[0]
      ?.o ?? null;
  const refuse = (gaps: readonly PrivilegeGap[]) =>
    new AirlockError("AIRLOCK_ROLLBACK_PRIVILEGES", `role ${role} cannot roll back promotion ${promotionId}; nothing was changed:\n${listGaps(gaps)}`, {
      hint: `roll back with the role that promoted${owner === null || owner === role ? "" : ` (the airlock schema's owner, ${owner})`}, which has all of it (README "Roles and privileges"); or, as an administrator: ${grants(gaps)}`,
      exitCode: EXIT_REFUSED,
      details: { role, missing: gaps },
    });
  // No airlock schema: no promotion to roll back, which the rollback itself reports.
  if (owner === null) return;
  // Airlock's own tables first: without them nothing of the promotion can be read.
  const airlock = await airlockGaps(c, role);
  if (airlock.length > 0) throw refuse(airlock);
  const exists = await query(c, "SELECT 1 FROM airlock.promotions WHERE id = $1", [promotionId]);
  // An unknown promotion is reported as such by the rollback itself.
  if (exists.rowCount === 0) return;
  const images = await query<{ schema: string; table: string; keyed: boolean; inserts: boolean; updates: boolean; deletes: boolean }>(
    c,
    `SELECT table_schema AS schema, table_name AS table, bool_or(key <> '{}'::jsonb) AS keyed, bool_or(op = 'insert') AS inserts, bool_or(op = 'update') AS updates, bool_or(op = 'delete') AS deletes
       FROM airlock.row_images WHERE promotion_id = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
    [promotionId],
  );
  const saved = await query<{ schema: string; table: string }>(
    c,
    'SELECT x.schema, x.table FROM airlock.promotions p CROSS JOIN LATERAL jsonb_to_recordset(p.saved) AS x(schema text, "table" text) WHERE p.id = $1',
    [promotionId],
  );
  const touched = [...new Set([...images.rows.map((t) => qualified(t.schema, t.table)), ...saved.rows.map((t) => qualified(t.schema, t.table))])];
  const gaps = uniqueGaps([
    ...(await tableGaps(
      c,
      role,
      images.rows.flatMap((t) => rowNeeds(qualified(t.schema, t.table), t)),
    )),
    ...(await pauseGaps(c, role, touched, "rollback restores its rows with its triggers and rules paused, which only the table's owner can")),
    ...(await sequenceReadGaps(c, role, "rollback reads production's schema, sequence positions included")),
  ]);
  if (gaps.length > 0) throw refuse(gaps);
}

/** Whether production has Airlock's audit tables for this role to read. */
export type AuditAccess = { readonly schema: false } | { readonly schema: true };

/**
 * Checks that the connected role may read production's audit trail: nothing to read when there is no airlock
 * schema yet (said so, not an error); an AirlockError naming the GRANTs when it exists and the role may not.
 */
export async function checkAuditPrivileges(c: pg.ClientBase): Promise<AuditAccess> {
  const r = await query<{ exists: boolean; usage: boolean; unreadable: string[] }>(
    c,
    `SELECT n.oid IS NOT NULL AS exists, coalesce(pg_catalog.has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
            coalesce((SELECT array_agg(t.relname::text ORDER BY t.relname) FROM pg_catalog.pg_class t
                       WHERE t.relnamespace = n.oid AND t.relname IN ('audit_log', 'audit_head') AND NOT pg_catalog.has_table_privilege(t.oid, 'SELECT')), '{}') AS unreadable
       FROM (SELECT 1) x LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'airlock'`,
  );
  const s = r.rows[0]!;
  if (!s.exists) return { schema: false };
  if (s.usage && s.unreadable.length === 0) return { schema: true };
  const role = await currentRole(c);
  const to = quoteIdent(role);
  const gaps: PrivilegeGap[] = [
    ...(s.usage ? [] : [{ need: "USAGE on schema airlock", why: "the audit trail lives there", grant: `GRANT USAGE ON SCHEMA airlock TO ${to}` }]),
    ...s.unreadable.map((t) => ({
      need: `SELECT on table airlock.${t}`,
      why: "audit reads the production trail and its head",
      grant: `GRANT SELECT ON TABLE airlock.${quoteIdent(t)} TO ${to}`,
    })),
  ];
  throw new AirlockError("AIRLOCK_AUDIT_PRIVILEGES", `role ${role} cannot read production's audit trail:\n${listGaps(gaps)}`, {
    hint: `as an administrator (or the airlock schema's owner): ${grants(gaps)} — the audit role needs ${STEP_ROLES.audit} (README "Roles and privileges")`,
    details: { role, missing: gaps },
  });
}
