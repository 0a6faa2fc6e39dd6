/**
 * SQL for catalog objects: how to name each kind in DDL, create it, drop
 * it, and change its owner, privileges or comment. Every identifier is
 * quoted here; definitions taken from the server (pg_get_*def) are used as
 * the server wrote them.
 */
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";
import type { CatalogModel, CatalogObject, ColumnObject } from "./model.ts";
import { OWNER } from "./model.ts";
import { qualifiedName, tableOf } from "./names.ts";

/** A role as written in GRANT/OWNER TO: the owner role becomes whoever runs the SQL. */
export function roleSql(role: string): string {
  if (role === "PUBLIC") return "PUBLIC";
  if (role === OWNER) return "CURRENT_USER";
  return quoteIdent(role);
}

/** A DO block around `body`, dollar-quoted with a tag the body does not contain. */
function doBlock(body: string): string {
  let tag = "$airlock$";
  for (let i = 0; body.includes(tag); i++) tag = `$airlock${i}$`;
  return `DO ${tag} ${body} ${tag}`;
}

/** SQL run against the current database, whatever its name (ALTER DATABASE needs one). */
function onCurrentDatabase(template: string): string {
  return doBlock(`BEGIN EXECUTE format(${quoteLiteral(template)}, current_database()); END`);
}

function tableSql(model: CatalogModel, id: string): string {
  const t = tableOf(model, id);
  return qualifiedName(t.schema, t.name);
}

/** How DDL names an object ("TABLE "s"."t"", "FUNCTION "s"."f"(integer)"); null for kinds without one. */
export function objectSql(model: CatalogModel, o: CatalogObject): string | null {
  switch (o.kind) {
    case "database":
      return null;
    case "schema":
      return `SCHEMA ${quoteIdent(o.name)}`;
    case "extension":
      return `EXTENSION ${quoteIdent(o.name)}`;
    case "type":
      return `${o.typtype === "domain" ? "DOMAIN" : "TYPE"} ${qualifiedName(o.schema, o.name)}`;
    case "sequence":
      return `SEQUENCE ${qualifiedName(o.schema, o.name)}`;
    case "function":
      return `${o.prokind === "procedure" ? "PROCEDURE" : o.prokind === "aggregate" ? "AGGREGATE" : "FUNCTION"} ${qualifiedName(o.schema, o.name)}(${o.args})`;
    case "table":
      return `${o.relkind === "foreign" ? "FOREIGN TABLE" : "TABLE"} ${qualifiedName(o.schema, o.name)}`;
    case "view":
      return `VIEW ${qualifiedName(o.schema, o.name)}`;
    case "matview":
      return `MATERIALIZED VIEW ${qualifiedName(o.schema, o.name)}`;
    case "column":
      return `COLUMN ${tableSql(model, o.table)}.${quoteIdent(o.name)}`;
    case "constraint":
      return `CONSTRAINT ${quoteIdent(o.name)} ON ${tableSql(model, o.on)}`;
    case "index":
      return `INDEX ${qualifiedName(tableOf(model, o.on).schema, o.name)}`;
    case "trigger":
      return `TRIGGER ${quoteIdent(o.name)} ON ${tableSql(model, o.on)}`;
    case "rule":
      return `RULE ${quoteIdent(o.name)} ON ${tableSql(model, o.on)}`;
    case "policy":
      return `POLICY ${quoteIdent(o.name)} ON ${tableSql(model, o.on)}`;
    case "cast":
      return `CAST (${o.source} AS ${o.target})`;
    case "operator":
      return `OPERATOR ${quoteIdent(o.schema)}.${o.name} (${o.left ?? "NONE"}, ${o.right ?? "NONE"})`;
    case "event_trigger":
      return `EVENT TRIGGER ${quoteIdent(o.name)}`;
    case "default_acl":
    case "setting":
      return null;
  }
}

/** The column as written in CREATE TABLE / ADD COLUMN. */
export function columnSql(c: ColumnObject, withNotNull: boolean): string {
  const parts = [quoteIdent(c.name), c.type];
  if (c.collation !== null) parts.push(`COLLATE ${c.collation}`);
  if (c.generated !== null) parts.push(`GENERATED ALWAYS AS (${c.generated}) STORED`);
  else if (c.default !== null) parts.push(`DEFAULT ${c.default}`);
  if (c.identity !== null) parts.push(`GENERATED ${c.identity === "always" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY`);
  if (withNotNull && c.notNull) parts.push("NOT NULL");
  return parts.join(" ");
}

function stripSemicolon(s: string): string {
  return s.trim().replace(/;$/, "");
}

const STATE = { O: "ENABLE", D: "DISABLE", R: "ENABLE REPLICA", A: "ENABLE ALWAYS" } as const;

/** ENABLE/DISABLE of a trigger, rule or event trigger. */
export function enabledSql(model: CatalogModel, o: CatalogObject & { enabled: "O" | "D" | "R" | "A" }): string {
  if (o.kind === "event_trigger") return `ALTER EVENT TRIGGER ${quoteIdent(o.name)} ${STATE[o.enabled]}`;
  if (o.kind !== "trigger" && o.kind !== "rule") throw new Error(`${o.id} has no enabled state`);
  return `ALTER TABLE ${tableSql(model, o.on)} ${STATE[o.enabled]} ${o.kind === "trigger" ? "TRIGGER" : "RULE"} ${quoteIdent(o.name)}`;
}

/** The statements creating an object (without its owner, privileges or comment). */
export function createSql(model: CatalogModel, o: CatalogObject): string[] {
  switch (o.kind) {
    case "database":
      return [];
    case "schema":
      return [`CREATE SCHEMA ${quoteIdent(o.name)}`];
    case "extension":
      return [`CREATE EXTENSION ${quoteIdent(o.name)} WITH SCHEMA ${quoteIdent(o.schema)} VERSION ${quoteLiteral(o.version)}`];
    case "type":
    case "function":
    case "cast":
    case "operator":
      return [o.definition];
    case "sequence":
      return [`CREATE SEQUENCE ${qualifiedName(o.schema, o.name)} ${o.options}`];
    case "table": {
      const name = qualifiedName(o.schema, o.name);
      const options = o.options.length > 0 ? ` WITH (${o.options.join(", ")})` : "";
      // A partition that is partitioned itself keeps its own partition key.
      const partitionBy = o.partitionKey !== null ? ` PARTITION BY ${o.partitionKey}` : "";
      if (o.partitionOf !== null)
        return [`CREATE TABLE ${name} PARTITION OF ${tableSql(model, o.partitionOf.parent)} ${o.partitionOf.bound}${partitionBy}${options}`];
      const cols = Object.values(model.objects)
        .filter((c): c is ColumnObject => c.kind === "column" && c.table === o.id)
        .sort((a, b) => a.position - b.position)
        .map((c) => columnSql(c, true));
      const inherits = o.inherits.length > 0 ? ` INHERITS (${o.inherits.map((p) => tableSql(model, p)).join(", ")})` : "";
      const out = [
        `CREATE ${o.unlogged ? "UNLOGGED " : ""}${o.relkind === "foreign" ? "FOREIGN " : ""}TABLE ${name} (${cols.join(", ")})${inherits}${partitionBy}${options}`,
      ];
      if (o.rowSecurity) out.push(`ALTER TABLE ${name} ENABLE ROW LEVEL SECURITY`);
      if (o.forceRowSecurity) out.push(`ALTER TABLE ${name} FORCE ROW LEVEL SECURITY`);
      return out;
    }
    case "column":
      return [`ALTER TABLE ${tableSql(model, o.table)} ADD COLUMN ${columnSql(o, true)}`];
    case "constraint":
      return [`ALTER TABLE ${tableSql(model, o.on)} ADD CONSTRAINT ${quoteIdent(o.name)} ${o.definition}`];
    case "index":
      return [o.definition];
    case "view":
    case "matview": {
      const options = o.options.length > 0 ? ` WITH (${o.options.join(", ")})` : "";
      const body = stripSemicolon(o.definition);
      if (o.kind === "view") return [`CREATE VIEW ${qualifiedName(o.schema, o.name)}${options} AS ${body}`];
      return [`CREATE MATERIALIZED VIEW ${qualifiedName(o.schema, o.name)}${options} AS ${body} WITH ${o.populated ? "" : "NO "}DATA`];
    }
    case "trigger":
    case "rule":
    case "event_trigger":
      return [o.definition, ...(o.enabled === "O" ? [] : [enabledSql(model, o)])];
    case "policy": {
      const parts = [
        `CREATE POLICY ${quoteIdent(o.name)} ON ${tableSql(model, o.on)} AS ${o.permissive ? "PERMISSIVE" : "RESTRICTIVE"} FOR ${o.command} TO ${o.roles.map(roleSql).join(", ")}`,
      ];
      if (o.using !== null) parts.push(`USING (${o.using})`);
      if (o.withCheck !== null) parts.push(`WITH CHECK (${o.withCheck})`);
      return [parts.join(" ")];
    }
    case "default_acl":
      return aclSql(model, o, o.aclDefault ?? [], o.acl ?? []);
    case "setting":
      return [settingSql(o.scope, o.inDatabase, o.name, o.value)];
  }
}

/**
 * ALTER DATABASE/ROLE … SET name = value, or RESET with value null. The
 * value is handed to set_config as a literal and stored FROM CURRENT, so a
 * value is never spliced into SQL (list values keep their own syntax).
 */
export function settingSql(scope: "database" | "role", inDatabase: boolean, name: string, value: string | null): string {
  const target = scope === "database" ? "DATABASE %I" : inDatabase ? "ROLE CURRENT_USER IN DATABASE %I" : "ROLE CURRENT_USER";
  if (value === null)
    return doBlock(
      `BEGIN EXECUTE format(${quoteLiteral(`ALTER ${target} RESET %I`)}, ${scope === "database" || inDatabase ? "current_database(), " : ""}${quoteLiteral(name)}); END`,
    );
  return doBlock(
    [
      `DECLARE previous text := current_setting(${quoteLiteral(name)}, true);`,
      `BEGIN PERFORM set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, true);`,
      `EXECUTE format(${quoteLiteral(`ALTER ${target} SET %I FROM CURRENT`)}, ${scope === "database" || inDatabase ? "current_database(), " : ""}${quoteLiteral(name)});`,
      `PERFORM set_config(${quoteLiteral(name)}, coalesce(previous, ''), true); END`,
    ].join(" "),
  );
}

/** The statements dropping an object (no CASCADE: what depends on it is dropped first, by name). */
export function dropSql(model: CatalogModel, o: CatalogObject): string[] {
  switch (o.kind) {
    case "database":
      return [];
    case "column":
      return [`ALTER TABLE ${tableSql(model, o.table)} DROP COLUMN ${quoteIdent(o.name)}`];
    case "constraint":
      return [`ALTER TABLE ${tableSql(model, o.on)} DROP CONSTRAINT ${quoteIdent(o.name)}`];
    case "default_acl":
      return aclSql(model, o, o.acl ?? [], o.aclDefault ?? []);
    case "setting":
      return [settingSql(o.scope, o.inDatabase, o.name, null)];
    case "type":
      // A base type and its I/O functions depend on each other: only CASCADE drops the pair.
      return [`DROP ${objectSql(model, o)}${o.typtype === "base" ? " CASCADE" : ""}`];
    default:
      return [`DROP ${objectSql(model, o)}`];
  }
}

/** ALTER … OWNER TO. */
export function ownerSql(model: CatalogModel, o: CatalogObject, owner: string): string[] {
  const name = objectSql(model, o);
  if (
    name === null ||
    o.kind === "column" ||
    o.kind === "constraint" ||
    o.kind === "index" ||
    o.kind === "trigger" ||
    o.kind === "rule" ||
    o.kind === "policy" ||
    o.kind === "cast"
  )
    return [];
  if (o.kind === "database") return [onCurrentDatabase(`ALTER DATABASE %I OWNER TO ${roleSql(owner)}`)];
  return [`ALTER ${name} OWNER TO ${roleSql(owner)}`];
}

/** COMMENT ON … IS …. */
export function commentSql(model: CatalogModel, o: CatalogObject, comment: string | null): string[] {
  const text = comment === null ? "NULL" : quoteLiteral(comment);
  if (o.kind === "database") return [onCurrentDatabase(`COMMENT ON DATABASE %I IS ${text.replace(/%/g, "%%")}`)];
  const name = objectSql(model, o);
  if (name === null) return [];
  // COMMENT names a procedure or aggregate as such, and a domain's type as TYPE or DOMAIN alike.
  return [`COMMENT ON ${name} IS ${text}`];
}

function grantTarget(model: CatalogModel, o: CatalogObject): { on: string; columns: string } | null {
  switch (o.kind) {
    case "table":
    case "view":
    case "matview":
      return { on: `TABLE ${qualifiedName(o.schema, o.name)}`, columns: "" };
    case "column":
      return { on: `TABLE ${tableSql(model, o.table)}`, columns: ` (${quoteIdent(o.name)})` };
    case "sequence":
      return { on: `SEQUENCE ${qualifiedName(o.schema, o.name)}`, columns: "" };
    case "function":
      return { on: `${o.prokind === "procedure" ? "PROCEDURE" : "FUNCTION"} ${qualifiedName(o.schema, o.name)}(${o.args})`, columns: "" };
    case "schema":
      return { on: `SCHEMA ${quoteIdent(o.name)}`, columns: "" };
    case "type":
      return { on: `${o.typtype === "domain" ? "DOMAIN" : "TYPE"} ${qualifiedName(o.schema, o.name)}`, columns: "" };
    case "database":
      return { on: "DATABASE %I", columns: "" };
    default:
      return null;
  }
}

/** GRANT/REVOKE statements turning privileges `from` into `to` (items "grantee:PRIV" with "*" for grant option). */
export function aclSql(model: CatalogModel, o: CatalogObject, from: readonly string[], to: readonly string[]): string[] {
  const parse = (item: string) => {
    const at = item.lastIndexOf(":");
    const grantable = item.endsWith("*");
    return { grantee: item.slice(0, at), priv: item.slice(at + 1).replace(/\*$/, ""), grantable };
  };
  const key = (x: { grantee: string; priv: string }) => `${x.grantee}:${x.priv}`;
  const before = new Map(from.map((i) => [key(parse(i)), parse(i)]));
  const after = new Map(to.map((i) => [key(parse(i)), parse(i)]));
  const out: string[] = [];
  const statement = (verb: "GRANT" | "REVOKE", priv: string, grantee: string, option: "" | "with" | "option-only") => {
    if (o.kind === "default_acl") {
      const scope = `ALTER DEFAULT PRIVILEGES FOR ROLE ${roleSql(o.role)}${o.schema === null ? "" : ` IN SCHEMA ${quoteIdent(o.schema)}`}`;
      return verb === "GRANT"
        ? `${scope} GRANT ${priv} ON ${o.objtype} TO ${roleSql(grantee)}${option === "with" ? " WITH GRANT OPTION" : ""}`
        : `${scope} REVOKE ${option === "option-only" ? "GRANT OPTION FOR " : ""}${priv} ON ${o.objtype} FROM ${roleSql(grantee)}`;
    }
    const target = grantTarget(model, o);
    if (target === null) return null;
    const sql =
      verb === "GRANT"
        ? `GRANT ${priv}${target.columns} ON ${target.on} TO ${roleSql(grantee)}${option === "with" ? " WITH GRANT OPTION" : ""}`
        : `REVOKE ${option === "option-only" ? "GRANT OPTION FOR " : ""}${priv}${target.columns} ON ${target.on} FROM ${roleSql(grantee)}`;
    return o.kind === "database" ? onCurrentDatabase(sql) : sql;
  };
  for (const [k, b] of [...before].sort()) {
    const a = after.get(k);
    if (a === undefined) out.push(statement("REVOKE", b.priv, b.grantee, "")!);
    else if (b.grantable && !a.grantable) out.push(statement("REVOKE", b.priv, b.grantee, "option-only")!);
  }
  for (const [k, a] of [...after].sort()) {
    const b = before.get(k);
    if (b === undefined || (a.grantable && !b.grantable)) out.push(statement("GRANT", a.priv, a.grantee, a.grantable ? "with" : "")!);
  }
  return out.filter((s): s is string => s !== null);
}
