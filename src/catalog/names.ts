/**
 * Names in the catalog model: ids show plain identifiers as they are and
 * quote the rest (so "a.b" in one name never reads as two), SQL always
 * quotes.
 */
import { quoteIdent } from "../pg/connect.ts";
import type { CatalogModel, TableObject, ViewObject } from "./model.ts";

/** An identifier as shown in ids and reviews: bare when plain, quoted otherwise. */
export function displayName(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name);
}

/** schema.name quoted for SQL: the one implementation in src/pg/table-names.ts, under the name the catalog code uses. */
export { qualified as qualifiedName } from "../pg/table-names.ts";

/**
 * The table, view or materialized view `id` names in the model: what DDL on it or on one of its columns,
 * indexes or constraints names (throws when the model has none).
 */
export function tableOf(model: CatalogModel, id: string): TableObject | ViewObject {
  const o = model.objects[id];
  if (o !== undefined && (o.kind === "table" || o.kind === "view" || o.kind === "matview")) return o;
  throw new Error(`the catalog model has no table ${id}`);
}
