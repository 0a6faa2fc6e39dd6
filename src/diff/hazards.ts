/**
 * Hazards: the risks of a diff, each with a stable code, a severity, the
 * object it concerns and counts. Every `danger` must be accepted by name
 * before approval. Thresholds come from `hazards` in airlock.config.ts.
 */
import type { AirlockConfig } from "../config/config.ts";
import type { FingerprintSet } from "../snapshot/fingerprint.ts";
import type { CatalogModel } from "../catalog/model.ts";
import { callsOf } from "../catalog/read.ts";
import { type SchemaChange, changesByObject } from "../catalog/plan.ts";
import { plural } from "../format/plural.ts";
import type { Hazard, TableChanges } from "./types.ts";

/** The SQL a reviewer reads for a change: everything it runs. */
function definitionOf(c: SchemaChange): string {
  return [...c.sql, ...c.afterData].map((x) => `${x};`).join("\n");
}

function aclChanges(before: readonly string[], after: readonly string[]): string[] {
  const a = new Set(before);
  const b = new Set(after);
  return [...[...a].filter((x) => !b.has(x)), ...[...b].filter((x) => !a.has(x))];
}

/**
 * Hazards of the typed schema changes. Code, privileges and settings headed
 * for production are danger, each with its own code and the full SQL.
 */
export function schemaHazards(changes: readonly SchemaChange[], from: CatalogModel, to: CatalogModel, rowsBefore: (table: string) => number): Hazard[] {
  const out: Hazard[] = [];
  const danger = (code: string, c: SchemaChange, message: string) => out.push({ code, severity: "danger", object: c.id, message, definition: definitionOf(c) });
  for (const c of changesByObject(changes)) {
    const o = c.after ?? c.before!;
    const made = c.action === "create" || (c.action === "recreate" && c.forcedBy === undefined) || (c.action === "alter" && c.changed.includes("definition"));
    const verb = c.action === "create" ? "creates" : c.action === "drop" ? "drops" : "changes";
    if (c.action === "drop" && o.kind === "table") {
      const t = `${o.schema}.${o.name}`;
      out.push({
        code: "DROP_TABLE",
        severity: "danger",
        object: t,
        message: `drops table ${t} and its ${plural(rowsBefore(t), "row")}`,
        count: rowsBefore(t),
      });
    }
    if (c.action === "drop" && o.kind === "column") {
      const t = from.objects[o.table];
      const name = t?.kind === "table" ? `${t.schema}.${t.name}.${o.name}` : c.id;
      out.push({
        code: "DROP_COLUMN",
        severity: "danger",
        object: name,
        message: `drops column ${name} (its values are saved before promotion, and restored by rollback)`,
      });
    }
    if (c.action === "alter" && o.kind === "column" && (c.changed.includes("type") || c.changed.includes("collation"))) {
      out.push({
        code: "TYPE_CHANGE",
        severity: "warn",
        object: c.id,
        message: `changes the type of ${c.id.slice("column ".length)} to ${o.type}; values are converted and may be rewritten or rejected`,
        definition: definitionOf(c),
      });
    }
    if (c.action === "create" && o.kind === "column" && o.notNull && o.default === null && o.identity === null && o.generated === null) {
      const t = from.objects[o.table];
      if (t?.kind === "table" && rowsBefore(`${t.schema}.${t.name}`) > 0) {
        out.push({
          code: "NOT_NULL_WITHOUT_DEFAULT",
          severity: "warn",
          object: c.id,
          message: `adds a NOT NULL column without a default to ${t.schema}.${t.name}, which has ${plural(rowsBefore(`${t.schema}.${t.name}`), "row")}`,
        });
      }
    }
    if (o.kind === "function" && c.action !== "drop" && made) {
      danger("FUNCTION", c, `${verb} ${o.prokind} ${c.id.slice("function ".length)} (${o.language}): its code would run in production`);
      if (o.securityDefiner)
        danger(
          "SECURITY_DEFINER",
          c,
          `${c.id.slice("function ".length)} is SECURITY DEFINER: it runs with the rights of its owner in production, whoever calls it`,
        );
    }
    if (o.kind === "function" && c.action === "alter" && c.changed.includes("securityDefiner") && o.securityDefiner && !made) {
      danger("SECURITY_DEFINER", c, `${c.id.slice("function ".length)} becomes SECURITY DEFINER`);
    }
    if (o.kind === "trigger" && c.action !== "drop" && (made || c.action === "recreate") && c.forcedBy === undefined)
      danger("TRIGGER", c, `${verb} trigger ${c.id.slice("trigger ".length)}: its function would fire on production rows`);
    if (o.kind === "rule" && c.action !== "drop" && (made || c.action === "recreate") && c.forcedBy === undefined)
      danger("RULE", c, `${verb} rule ${c.id.slice("rule ".length)}: it rewrites queries on production tables`);
    if ((o.kind === "trigger" || o.kind === "rule" || o.kind === "event_trigger") && c.action === "alter" && c.changed.includes("enabled")) {
      danger(
        o.kind === "trigger" ? "TRIGGER_STATE" : o.kind === "rule" ? "RULE_STATE" : "EVENT_TRIGGER",
        c,
        `${o.enabled === "D" ? "disables" : "enables"} ${o.kind.replace("_", " ")} ${c.id.slice(c.id.indexOf(" ") + 1)}`,
      );
    }
    if (o.kind === "policy" && c.forcedBy === undefined) danger("POLICY", c, `${verb} row-level security policy ${c.id.slice("policy ".length)}`);
    if (o.kind === "table" && c.action === "alter" && (c.changed.includes("rowSecurity") || c.changed.includes("forceRowSecurity"))) {
      danger(
        "ROW_SECURITY",
        c,
        `${o.rowSecurity ? "enables" : "disables"}${o.forceRowSecurity ? " and forces" : ""} row-level security on ${o.schema}.${o.name}`,
      );
    }
    if (o.kind === "table" && c.action === "create" && (o.rowSecurity || o.forceRowSecurity))
      danger("ROW_SECURITY", c, `creates ${o.schema}.${o.name} with row-level security`);
    if ((o.kind === "view" || o.kind === "matview") && c.action !== "drop" && c.forcedBy === undefined) {
      danger(
        "VIEW",
        c,
        `${verb} ${o.kind === "view" ? "view" : "materialized view"} ${o.schema}.${o.name}: its query (and any function it calls) runs for whoever reads it`,
      );
    }
    if (o.kind === "event_trigger" && c.action !== "drop" && (made || c.action === "recreate"))
      danger("EVENT_TRIGGER", c, `${verb} event trigger ${o.name}: it fires on every DDL command in production`);
    if (o.kind === "extension" && c.action !== "drop") danger("EXTENSION", c, `${verb} extension ${o.name} ${o.version}: its code is installed in production`);
    if (o.kind === "cast" && c.action !== "drop")
      danger("CAST", c, `${verb} cast ${c.id.slice("cast ".length)}: it can run a function wherever values are converted`);
    if (o.kind === "operator" && c.action !== "drop")
      danger("OPERATOR", c, `${verb} operator ${c.id.slice("operator ".length)}: it runs a function wherever it is used`);
    if (o.kind === "type" && c.action !== "drop" && (o.typtype === "base" || (o.functions ?? []).length > 0) && (made || c.action === "recreate")) {
      danger("TYPE_FUNCTIONS", c, `${verb} type ${o.schema}.${o.name} with its own functions (${(o.functions ?? []).join(", ")})`);
    }
    // Expressions evaluated by DDL or on every row: defaults, generated columns, CHECKs, index expressions.
    if ((o.kind === "column" || o.kind === "constraint" || o.kind === "index") && c.action !== "drop" && c.forcedBy === undefined) {
      const calls = callsOf(to, c.id);
      if (calls.length > 0 && (c.action !== "alter" || c.changed.some((k) => k === "default" || k === "definition" || k === "type"))) {
        danger(
          "EXPRESSION_CALLS_FUNCTION",
          c,
          `${c.id} calls ${calls.join(", ")}, written in this session: it runs with the rights of whoever writes the rows or runs the DDL`,
        );
      }
    }
    if (c.changed.includes("owner") && c.action === "alter") danger("OWNER_CHANGE", c, `changes the owner of ${c.id} to ${o.owner ?? "?"}`);
    if (o.kind === "default_acl")
      danger(
        "DEFAULT_PRIVILEGES",
        c,
        `${verb} default privileges for ${o.objtype.toLowerCase()} created by ${o.role}${o.schema === null ? "" : ` in schema ${o.schema}`}`,
      );
    if (o.kind === "setting")
      danger(
        o.scope === "database" ? "DATABASE_SETTING" : "ROLE_SETTING",
        c,
        `${c.action === "drop" ? "resets" : "sets"} ${o.scope} setting ${o.name}${c.action === "drop" ? "" : ` = ${o.value}`}`,
      );
    if (o.kind !== "default_acl" && (c.action === "alter" ? c.changed.includes("acl") : c.action === "create")) {
      const before = c.action === "create" ? (o.aclDefault ?? []) : (c.before?.acl ?? []);
      const delta = aclChanges(before, o.acl ?? []);
      if (delta.some((x) => x.startsWith("PUBLIC:")))
        danger(
          "GRANT_PUBLIC",
          c,
          `grants or revokes privileges on ${c.id} for PUBLIC (every role): ${delta.filter((x) => x.startsWith("PUBLIC:")).join(", ")}`,
        );
      if (delta.some((x) => !x.startsWith("PUBLIC:")))
        danger("GRANT", c, `grants or revokes privileges on ${c.id}: ${delta.filter((x) => !x.startsWith("PUBLIC:")).join(", ")}`);
    }
  }
  return out;
}

/**
 * The columns a table's updates change in more rows than is bulk (the same column overwritten across the
 * table, as `UPDATE t SET title = 'x'` does), with how many rows each; empty when none is.
 */
function overwrittenColumns(t: TableChanges, bulk: (n: number) => boolean): Array<{ column: string; rows: number }> {
  const rows = new Map<string, number>();
  for (const c of t.changes) if (c.kind === "update") for (const col of Object.keys(c.new)) rows.set(col, (rows.get(col) ?? 0) + 1);
  return [...rows]
    .filter(([, n]) => bulk(n))
    .map(([column, n]) => ({ column, rows: n }))
    .sort((a, b) => b.rows - a.rows || a.column.localeCompare(b.column));
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
    out.push({
      code: "BULK_DELETE",
      severity: "danger",
      object: name,
      message: `deletes ${deletes} of ${plural(t.rowsBefore, "row")} of ${name}`,
      count: deletes,
    });
  }
  const overwritten = overwrittenColumns(t, bulk);
  if (overwritten.length > 0) {
    const most = Math.max(...overwritten.map((c) => c.rows));
    const list = overwritten.map((c) => `${c.column} in ${c.rows}`).join(", ");
    out.push({
      code: "BULK_OVERWRITE",
      severity: "danger",
      object: name,
      message: `overwrites column${overwritten.length === 1 ? "" : "s"} ${list} of ${plural(t.rowsBefore, "row")} of ${name}: the old values are replaced across the table`,
      count: most,
    });
  } else if (bulk(updates)) {
    out.push({
      code: "BULK_UPDATE",
      severity: "warn",
      object: name,
      message: `updates ${updates} of ${plural(t.rowsBefore, "row")} of ${name}`,
      count: updates,
    });
  }
  if (inserts > limits.largeInsert)
    out.push({ code: "LARGE_INSERT", severity: "warn", object: name, message: `inserts ${plural(inserts, "row")} into ${name}`, count: inserts });
  if (t.key === null && t.changes.length > 0) {
    out.push({
      code: "NO_KEY",
      severity: "danger",
      object: name,
      message: `${name} has no primary or non-null unique key: rows are matched by all their values, so conflicts with production's changes since the snapshot cannot be detected for it; rollback restores the table as a multiset (each inserted row removed once, each deleted row put back)`,
      count: t.changes.length,
    });
  }
  if (masked > 0) {
    out.push({
      code: "MASKED_VALUE",
      severity: "danger",
      object: name,
      message: `${masked} inserted or updated values in ${name} are fake values from the snapshot's masking; promoted, they would write fake data into production`,
      count: masked,
    });
  }
  return out;
}

const ORDER = { danger: 0, warn: 1, info: 2 } as const;

/** Hazards sorted for review: danger first, then by object and code. */
export function sortHazards(hazards: readonly Hazard[]): Hazard[] {
  return [...hazards].sort((a, b) => ORDER[a.severity] - ORDER[b.severity] || a.object.localeCompare(b.object) || a.code.localeCompare(b.code));
}
