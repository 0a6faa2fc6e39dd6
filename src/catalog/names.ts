/**
 * Names in the catalog model: ids show plain identifiers as they are and
 * quote the rest (so "a.b" in one name never reads as two), SQL always
 * quotes.
 */
import { quoteIdent } from "../pg/connect.ts";

/** An identifier as shown in ids and reviews: bare when plain, quoted otherwise. */
export function displayName(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name);
}

/** schema.name quoted for SQL. */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}
