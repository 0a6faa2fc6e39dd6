/**
 * A database's state as the schema zoo (test/zoo.test.ts) compares it before
 * and after promotion and rollback: the catalog model, every relation's kind,
 * owner and column order, every index, every table's rows as a checksum, and
 * the differences between two of them, described for a reader.
 */
import { compareCatalogs } from "../../src/catalog/compare.ts";
import type { CatalogModel, CatalogObject } from "../../src/catalog/model.ts";
import { readCatalog } from "../../src/catalog/read.ts";
import { type PgTarget, withClient } from "../../src/pg/connect.ts";

const USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema', 'airlock') AND n.nspname NOT LIKE 'pg\\_%'";

/** Runs SQL on a database as its superuser; the rows. */
export async function rows(target: PgTarget | string, sql: string, values: unknown[] = []): Promise<Record<string, any>[]> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query(sql, values)).rows);
}

/**
 * Every table's rows as `count:md5` of its rows' text, sorted (so a multiset; in column order, so a moved column
 * shows), and the rows of every populated materialized view (as "matview <name>").
 */
export async function checksums(target: PgTarget | string): Promise<Record<string, string>> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => {
    const relations = (
      await c.query(`SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) AS t, k.relkind = 'm' AS matview FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
                      WHERE (k.relkind IN ('r', 'p') OR (k.relkind = 'm' AND k.relispopulated)) AND ${USER_SCHEMAS} ORDER BY 1`)
    ).rows as Array<{ t: string; matview: boolean }>;
    const out: Record<string, string> = {};
    for (const { t, matview } of relations)
      out[`${matview ? "matview " : ""}${t}`] = (
        await c.query(`SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS h FROM ${t} t`)
      ).rows[0].h;
    return out;
  });
}

/** Every relation: kind, owner, its columns in attnum order (dropped ones left out), and whether a matview is populated. */
export async function relations(target: PgTarget | string): Promise<Record<string, string>> {
  const r = await rows(
    target,
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) AS rel,
            k.relkind::text || ' owner=' || pg_get_userbyid(k.relowner)
              || ' columns=' || coalesce((SELECT string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = k.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
              || CASE WHEN k.relkind = 'm' THEN ' populated=' || k.relispopulated::text ELSE '' END AS what
       FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace
      WHERE k.relkind IN ('r', 'p', 'v', 'm', 'f') AND ${USER_SCHEMAS} ORDER BY 1`,
  );
  return Object.fromEntries(r.map((x) => [x.rel, x.what]));
}

/** Every index, by name, with its definition. */
export async function indexes(target: PgTarget | string): Promise<Record<string, string>> {
  const r = await rows(
    target,
    `SELECT quote_ident(schemaname) || '.' || quote_ident(indexname) AS i, indexdef AS d FROM pg_indexes n WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'airlock') ORDER BY 1`,
  );
  return Object.fromEntries(r.map((x) => [x.i, x.d]));
}

/** The catalog model; `owners` are the roles mapped to the owner (none: every role keeps its name). */
export async function catalog(target: PgTarget | string, owners: readonly string[] = []): Promise<CatalogModel> {
  return withClient(target, { step: "test" }, (c) => readCatalog(c, { owners: new Set(owners) }));
}

/** Roles that own objects in the database (the application role or the agent, and whoever created the extension). */
export async function ownersOf(target: PgTarget | string): Promise<string[]> {
  const r = await rows(
    target,
    `SELECT DISTINCT pg_get_userbyid(o) AS r FROM (
       SELECT k.relowner AS o FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE ${USER_SCHEMAS}
       UNION SELECT extowner FROM pg_extension WHERE extname <> 'plpgsql') x`,
  );
  return r.map((x) => x.r as string);
}

/** The whole state a rollback must give back. */
export interface State {
  readonly catalog: CatalogModel;
  readonly relations: Record<string, string>;
  readonly indexes: Record<string, string>;
  readonly checksums: Record<string, string>;
}

/** A database's whole state, for comparing after a rollback. */
export async function stateOf(target: PgTarget): Promise<State> {
  return { catalog: await catalog(target), relations: await relations(target), indexes: await indexes(target), checksums: await checksums(target) };
}

/** Values of every sequence (last_value, is_called), to put back after probing inserts. */
export async function sequenceValues(target: PgTarget): Promise<Array<{ seq: string; v: string; called: boolean }>> {
  const names = await rows(
    target,
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) AS seq FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.relkind = 'S' AND ${USER_SCHEMAS}`,
  );
  const out: Array<{ seq: string; v: string; called: boolean }> = [];
  for (const { seq } of names) {
    const [s] = await rows(target, `SELECT last_value::text AS v, is_called AS called FROM ${seq}`);
    out.push({ seq, v: s!.v, called: s!.called });
  }
  return out;
}

/** Catalog differences, ignoring what staging changes on purpose: the database's own privileges and role-level settings. */
export function differences(actual: CatalogModel, expected: CatalogModel, sequenceValues = false): string[] {
  const ignore = (o: CatalogObject, property: string) => (o.kind === "database" && property !== "comment") || (o.kind === "setting" && o.scope === "role");
  return compareCatalogs(actual, expected, { ignore, sequenceValues }).map(
    (d) =>
      `${d.id}: ${d.difference}${d.difference === "missing" || d.difference === "extra" ? "" : ` — expected ${describeObject(expected.objects[d.id])}, got ${describeObject(actual.objects[d.id])}`}`,
  );
}

function describeObject(o: CatalogObject | undefined): string {
  if (o === undefined) return "(none)";
  const { id: _id, ...rest } = o as CatalogObject & Record<string, unknown>;
  return JSON.stringify(rest);
}

/** Entries of two records that differ, as "key: expected → actual". */
export function recordDiff(actual: Record<string, string>, expected: Record<string, string>): string[] {
  const keys = [...new Set([...Object.keys(actual), ...Object.keys(expected)])].sort();
  return keys.filter((k) => actual[k] !== expected[k]).map((k) => `${k}: ${expected[k] ?? "(none)"} → ${actual[k] ?? "(none)"}`);
}

/** Relations without their owners (staging's are the agent's). */
export const ownerless = (r: Record<string, string>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.replace(/ owner=\S+/, "")]));

/** Rows of a table as a sorted multiset of JSON with the given columns left out. */
export async function rowsWithout(target: PgTarget | string, table: string, leaveOut: readonly string[]): Promise<string[]> {
  const minus = leaveOut.map((c) => ` - '${c}'`).join("");
  return (await rows(target, `SELECT (to_jsonb(t)${minus})::text AS r FROM ${table} t ORDER BY 1`)).map((x) => x.r as string);
}

/** `a` less one of each element of `b` (multisets of strings), sorted. */
export function without(a: readonly string[], b: readonly string[]): string[] {
  const left = [...a];
  for (const x of b) {
    const i = left.indexOf(x);
    if (i >= 0) left.splice(i, 1);
  }
  return left.sort();
}
