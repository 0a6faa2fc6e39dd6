/**
 * The statements both restores build from a manifest: the COPY that loads a
 * table's data file and the setval that puts a sequence where production had
 * it. The local restore (src/snapshot/restore.ts) sends them over its
 * connection; the staging container's (src/staging/container-restore.ts) writes them
 * into the psql script it runs. One builder, so the two cannot drift apart.
 */
import { quoteIdent, quoteLiteral } from "../pg/connect.ts";
import type { SnapshotManifest } from "./store.ts";

/** Where COPY reads a table's rows: the client's stream, or a program the server runs. */
export type CopySource = "stdin" | { readonly program: string };

/**
 * The COPY that loads a table's data file. A table with nothing to copy (no columns, or only generated ones)
 * has an empty line per row: COPY without a column list takes its default list, which is empty then, and
 * loads each empty line as one row (an empty list in parentheses is a syntax error). FREEZE: the restore
 * created the table in the same transaction.
 */
export function copyInSql(
  t: { readonly schema: string; readonly name: string; readonly columns: ReadonlyArray<{ readonly name: string }> },
  source: CopySource,
): string {
  const table = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
  const cols = t.columns.length === 0 ? "" : ` (${t.columns.map((c) => quoteIdent(c.name)).join(", ")})`;
  const from = source === "stdin" ? "STDIN" : `PROGRAM ${quoteLiteral(source.program)}`;
  return `COPY ${table}${cols} FROM ${from} WITH (FREEZE)`;
}

/** The setval that gives a sequence the value and is_called production had. */
export function setvalSql(s: SnapshotManifest["sequences"][number]): string {
  const name = quoteLiteral(`${quoteIdent(s.schema)}.${quoteIdent(s.name)}`);
  return `SELECT pg_catalog.setval(${name}, ${s.lastValue}, ${s.isCalled})`;
}
