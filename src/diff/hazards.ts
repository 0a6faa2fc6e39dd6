/**
 * Hazards: the risks of a diff, each with a stable code, a severity, the
 * object it concerns and counts. Every `danger` must be accepted by name
 * before approval. Thresholds come from `hazards` in airlock.config.ts.
 */
import type { AirlockConfig } from "../config/config.ts";
import type { FingerprintSet } from "../snapshot/leak-scan.ts";
import type { Hazard, TableChanges } from "./types.ts";

const IDENT = String.raw`"((?:[^"]|"")+)"`;
const DROP_TABLE = new RegExp(String.raw`^drop table ${IDENT}\.${IDENT}`, "i");
const DROP_COLUMN = new RegExp(String.raw`^alter table ${IDENT}\.${IDENT} drop column ${IDENT}`, "i");
const TYPE_CHANGE = new RegExp(String.raw`^alter table ${IDENT}\.${IDENT} alter column ${IDENT} (?:set data )?type`, "i");
const ADD_NOT_NULL = new RegExp(String.raw`^alter table ${IDENT}\.${IDENT} add column ${IDENT} (.*)$`, "is");
const unq = (s: string) => s.replace(/""/g, '"');

/** Hazards of the schema changes. */
export function schemaHazards(statements: readonly string[], rowsBefore: (table: string) => number): Hazard[] {
  const out: Hazard[] = [];
  for (const s of statements) {
    let m = DROP_TABLE.exec(s);
    if (m !== null) {
      const t = `${unq(m[1]!)}.${unq(m[2]!)}`;
      out.push({ code: "DROP_TABLE", severity: "danger", object: t, message: `drops table ${t} and its ${rowsBefore(t)} rows`, count: rowsBefore(t) });
      continue;
    }
    m = DROP_COLUMN.exec(s);
    if (m !== null) {
      const c = `${unq(m[1]!)}.${unq(m[2]!)}.${unq(m[3]!)}`;
      out.push({ code: "DROP_COLUMN", severity: "danger", object: c, message: `drops column ${c} (its values are saved before promotion, and restored by rollback)` });
      continue;
    }
    m = TYPE_CHANGE.exec(s);
    if (m !== null) {
      const c = `${unq(m[1]!)}.${unq(m[2]!)}.${unq(m[3]!)}`;
      out.push({ code: "TYPE_CHANGE", severity: "warn", object: c, message: `changes the type of ${c}; values are converted and may be rewritten or rejected` });
      continue;
    }
    m = ADD_NOT_NULL.exec(s);
    if (m !== null && /\bnot null\b/i.test(m[4]!) && !/\bdefault\b/i.test(m[4]!)) {
      const t = `${unq(m[1]!)}.${unq(m[2]!)}`;
      if (rowsBefore(t) > 0) out.push({ code: "NOT_NULL_WITHOUT_DEFAULT", severity: "warn", object: `${t}.${unq(m[3]!)}`, message: `adds a NOT NULL column without a default to ${t}, which has ${rowsBefore(t)} rows` });
    }
  }
  return out;
}

/** Hazards of one table's data changes. */
export function tableHazards(t: TableChanges, limits: AirlockConfig["hazards"], maskedValues: FingerprintSet | null): Hazard[] {
  const out: Hazard[] = [];
  const name = `${t.schema}.${t.name}`;
  let inserts = 0;
  let updates = 0;
  let deletes = 0;
  let masked = 0;
  for (const c of t.changes) {
    if (c.kind === "insert") inserts++;
    else if (c.kind === "update") updates++;
    else deletes++;
    if (maskedValues !== null && c.kind !== "delete") {
      for (const v of Object.values(c.kind === "insert" ? c.row : c.new)) if (v !== null && maskedValues.has(v)) masked++;
    }
  }
  const bulk = (n: number) => n > limits.bulkRows || (n > 1 && t.rowsBefore > 0 && n / t.rowsBefore > limits.bulkFraction);
  if (deletes > 0 && deletes === t.rowsBefore) {
    out.push({ code: "ALL_ROWS_DELETED", severity: "danger", object: name, message: `deletes every row of ${name} (${deletes})`, count: deletes });
  } else if (bulk(deletes)) {
    out.push({ code: "BULK_DELETE", severity: "danger", object: name, message: `deletes ${deletes} of ${t.rowsBefore} rows of ${name}`, count: deletes });
  }
  if (bulk(updates)) out.push({ code: "BULK_UPDATE", severity: "warn", object: name, message: `updates ${updates} of ${t.rowsBefore} rows of ${name}`, count: updates });
  if (inserts > limits.largeInsert) out.push({ code: "LARGE_INSERT", severity: "warn", object: name, message: `inserts ${inserts} rows into ${name}`, count: inserts });
  if (t.key === null && t.changes.length > 0) out.push({ code: "NO_KEY", severity: "warn", object: name, message: `${name} has no primary or unique key: rows are matched by all their values`, count: t.changes.length });
  if (masked > 0) {
    out.push({ code: "MASKED_VALUE", severity: "danger", object: name, message: `${masked} inserted or updated values in ${name} are fake values from the snapshot's masking; promoted, they would write fake data into production`, count: masked });
  }
  return out;
}

const ORDER = { danger: 0, warn: 1, info: 2 } as const;

/** Hazards sorted for review: danger first, then by object and code. */
export function sortHazards(hazards: readonly Hazard[]): Hazard[] {
  return [...hazards].sort((a, b) => ORDER[a.severity] - ORDER[b.severity] || a.object.localeCompare(b.object) || a.code.localeCompare(b.code));
}
