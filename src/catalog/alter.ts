/**
 * In-place schema changes: which property changes an ALTER can make (any
 * other change drops and creates the object again), the ALTER statements for
 * them, and an object's decorations — owner, privileges, comment, a view's
 * column comments and grants — relative to what it had.
 */
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";
import type { CatalogModel, CatalogObject, ColumnObject, ViewObject } from "./model.ts";
import { qualifiedName, tableOf } from "./names.ts";
import { aclSql, commentSql, enabledSql, ownerSql, settingSql } from "./sql.ts";

/** Properties never compared: where a column sits, and how far a sequence has counted. */
const UNCOMPARED = new Set(["position", "lastValue", "isCalled"]);

function comparable(o: CatalogObject): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([k]) => !UNCOMPARED.has(k)));
}

/** The properties in which two versions of an object differ. */
export function changedProperties(a: CatalogObject, b: CatalogObject): string[] {
  const x = comparable(a);
  const y = comparable(b);
  return [...new Set([...Object.keys(x), ...Object.keys(y)])].filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k])).sort();
}

/** Can these changed properties be applied in place (ALTER), or must the object be dropped and created again? */
export function alterableInPlace(a: CatalogObject, b: CatalogObject, changed: readonly string[]): boolean {
  // "columns" is what a view's columns carry (comments, privileges).
  const always = new Set(["owner", "acl", "aclDefault", "comment", "columns"]);
  const rest = changed.filter((k) => !always.has(k));
  if (rest.length === 0) return true;
  const only = (...keys: string[]) => rest.every((k) => keys.includes(k));
  switch (a.kind) {
    case "column":
      return only("type", "collation", "default", "notNull", "identity");
    case "table":
      return only("options", "rowSecurity", "forceRowSecurity");
    case "sequence":
      return only("options", "ownedBy");
    case "function":
      return (
        b.kind === "function" &&
        only("definition", "securityDefiner", "volatility", "language") &&
        a.prokind === b.prokind &&
        a.prokind !== "aggregate" &&
        a.returns === b.returns
      );
    case "matview":
      return only("populated");
    case "trigger":
    case "rule":
    case "event_trigger":
      return only("enabled");
    case "type":
      return a.kind === "type" && b.kind === "type" && a.typtype === "enum" && only("labels", "definition") && isSubsequence(a.labels ?? [], b.labels ?? []);
    case "extension":
      return only("version", "schema");
    case "setting":
      return only("value");
    case "default_acl":
    case "database":
      return true;
    default:
      return false;
  }
}

function isSubsequence(small: readonly string[], big: readonly string[]): boolean {
  let i = 0;
  for (const x of big) if (x === small[i]) i++;
  return i === small.length;
}

/** Owner, privileges and comment of an object, relative to what it had (null: newly created). */
export function decorations(model: CatalogModel, o: CatalogObject, was: CatalogObject | null): string[] {
  const out: string[] = [];
  if (o.owner !== undefined && (was === null ? o.owner !== "$owner" : was.owner !== o.owner)) out.push(...ownerSql(model, o, o.owner));
  if (o.kind !== "default_acl" && o.acl !== undefined) {
    const base = was === null ? (o.aclDefault ?? []) : (was.acl ?? []);
    if (JSON.stringify(base) !== JSON.stringify(o.acl)) out.push(...aclSql(model, o, base, o.acl));
  }
  const comment = o.comment ?? null;
  if (was === null ? comment !== null : (was.comment ?? null) !== comment) out.push(...commentSql(model, o, comment));
  if (o.kind === "view" || o.kind === "matview") out.push(...viewColumnDecorations(model, o, was?.kind === o.kind ? was : null));
  return out;
}

/** Comments and privileges of a view's columns, relative to what it had (null: newly created). */
function viewColumnDecorations(model: CatalogModel, v: ViewObject, was: ViewObject | null): string[] {
  const out: string[] = [];
  const before = was?.columns ?? {};
  const after = v.columns ?? {};
  for (const name of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const b = before[name] ?? { comment: null, acl: [] };
    const a = after[name] ?? { comment: null, acl: [] };
    const col: ColumnObject = {
      kind: "column",
      id: `column ${v.id}.${name}`,
      table: v.id,
      name,
      type: "",
      collation: null,
      notNull: false,
      default: null,
      generated: null,
      identity: null,
      position: 0,
    };
    if (JSON.stringify(b.acl) !== JSON.stringify(a.acl)) out.push(...aclSql(model, col, b.acl, a.acl));
    if (b.comment !== a.comment) out.push(...commentSql(model, col, a.comment));
  }
  return out;
}

/** In-place changes of one object; NOT NULL waits for the data. */
export function alterSql(model: CatalogModel, a: CatalogObject, b: CatalogObject, changed: readonly string[]): { sql: string[]; afterData: string[] } {
  const sql: string[] = [];
  const afterData: string[] = [];
  const has = (k: string) => changed.includes(k);
  if (a.kind === "column" && b.kind === "column") {
    const t = tableOf(model, b.table);
    const alter = `ALTER TABLE ${qualifiedName(t.schema, t.name)} ALTER COLUMN ${quoteIdent(b.name)}`;
    if (has("type") || has("collation")) {
      // A default that cannot be cast automatically is dropped around the type change.
      if (a.default !== null) sql.push(`${alter} DROP DEFAULT`);
      sql.push(`${alter} TYPE ${b.type}${b.collation === null ? "" : ` COLLATE ${b.collation}`} USING ${quoteIdent(b.name)}::${b.type}`);
      if (b.default !== null) sql.push(`${alter} SET DEFAULT ${b.default}`);
    } else if (has("default")) {
      sql.push(b.default === null ? `${alter} DROP DEFAULT` : `${alter} SET DEFAULT ${b.default}`);
    }
    if (has("identity")) {
      if (b.identity === null) sql.push(`${alter} DROP IDENTITY`);
      else if (a.identity === null) sql.push(`${alter} ADD GENERATED ${b.identity === "always" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY`);
      else sql.push(`${alter} SET GENERATED ${b.identity === "always" ? "ALWAYS" : "BY DEFAULT"}`);
    }
    if (has("notNull")) (b.notNull ? afterData : sql).push(`${alter} ${b.notNull ? "SET" : "DROP"} NOT NULL`);
  } else if (a.kind === "table" && b.kind === "table") {
    const name = qualifiedName(b.schema, b.name);
    if (has("options")) {
      const removed = a.options.filter((x) => !b.options.includes(x)).map((x) => x.slice(0, x.indexOf("=")));
      if (removed.length > 0) sql.push(`ALTER TABLE ${name} RESET (${removed.join(", ")})`);
      if (b.options.length > 0) sql.push(`ALTER TABLE ${name} SET (${b.options.join(", ")})`);
    }
    if (has("rowSecurity")) sql.push(`ALTER TABLE ${name} ${b.rowSecurity ? "ENABLE" : "DISABLE"} ROW LEVEL SECURITY`);
    if (has("forceRowSecurity")) sql.push(`ALTER TABLE ${name} ${b.forceRowSecurity ? "FORCE" : "NO FORCE"} ROW LEVEL SECURITY`);
  } else if (a.kind === "sequence" && b.kind === "sequence") {
    if (has("options")) sql.push(`ALTER SEQUENCE ${qualifiedName(b.schema, b.name)} ${b.options}`);
  } else if (a.kind === "function" && b.kind === "function") {
    if (has("definition") || has("securityDefiner") || has("volatility") || has("language")) sql.push(b.definition);
  } else if (a.kind === "matview" && b.kind === "matview") {
    if (has("populated")) sql.push(`REFRESH MATERIALIZED VIEW ${qualifiedName(b.schema, b.name)}${b.populated ? "" : " WITH NO DATA"}`);
  } else if ((b.kind === "trigger" || b.kind === "rule" || b.kind === "event_trigger") && has("enabled")) {
    sql.push(enabledSql(model, b));
  } else if (a.kind === "type" && b.kind === "type" && has("labels")) {
    const old = new Set(a.labels ?? []);
    const labels = b.labels ?? [];
    labels.forEach((label, i) => {
      if (old.has(label)) return;
      const next = labels.slice(i + 1).find((x) => old.has(x));
      sql.push(`ALTER TYPE ${qualifiedName(b.schema, b.name)} ADD VALUE ${quoteLiteral(label)}${next === undefined ? "" : ` BEFORE ${quoteLiteral(next)}`}`);
      old.add(label);
    });
  } else if (a.kind === "extension" && b.kind === "extension") {
    if (has("version")) sql.push(`ALTER EXTENSION ${quoteIdent(b.name)} UPDATE TO ${quoteLiteral(b.version)}`);
    if (has("schema")) sql.push(`ALTER EXTENSION ${quoteIdent(b.name)} SET SCHEMA ${quoteIdent(b.schema)}`);
  } else if (a.kind === "setting" && b.kind === "setting") {
    sql.push(settingSql(b.scope, b.inDatabase, b.name, b.value));
  } else if (a.kind === "default_acl" && b.kind === "default_acl") {
    sql.push(...aclSql(model, b, a.acl ?? [], b.acl ?? []));
  }
  sql.push(...decorations(model, b, a));
  return { sql, afterData };
}
