/**
 * What rolling back a promotion's schema changes needs beyond what the
 * promotion's own DDL needs: CREATE where dropped objects come back, the
 * owners of the views and foreign keys a rebuilt table takes with it, and
 * ownership of the tables whose triggers or rules the diff adds (rollback
 * pauses and drops them).
 */
import type pg from "pg";
import type { SchemaChangeRecord } from "../diff/types.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { qualified } from "../pg/table-names.ts";
import type { PrivilegeGap } from "./privilege-gaps.ts";

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
export async function schemaChangeGaps(c: pg.ClientBase, role: string, changes: readonly SchemaChangeRecord[]): Promise<PrivilegeGap[]> {
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
