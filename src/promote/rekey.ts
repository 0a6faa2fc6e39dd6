/**
 * `promote --rekey`: rows the agent inserted into a table whose key comes
 * from a sequence get fresh keys from production's sequence instead of the
 * keys staging gave them, and every foreign key among the diff's rows that
 * pointed at an old key is rewritten to the new one. Production may have
 * used the staging keys meanwhile; this is how the insert still lands.
 * "Comes from a sequence" means any shape (src/apply/sequence-feeds.ts): a
 * serial, an identity, or a default calling `nextval` on a sequence in any
 * schema, owned or not; the values are drawn inside the promotion's
 * transaction, so a refused or rehearsed promotion gives them back.
 */
import type pg from "pg";
import type { Diff, RowChange, RowValues, TableChanges } from "../diff/types.ts";
import { query } from "../pg/connect.ts";
import { feedOfColumn, feedsOfTables } from "../apply/sequence-feeds.ts";
import { drawValues } from "../apply/sequences.ts";

/** The diff with re-keyed inserts, and how many keys changed. */
export async function rekeyInserts(c: pg.ClientBase, diff: Diff): Promise<{ diff: Diff; remapped: number }> {
  // table -> (old key -> new key), for single-column keys fed by a sequence (tables missing in production have none).
  const maps = new Map<string, { column: string; map: Map<string, string> }>();
  const candidates = diff.tables.filter((t) => t.key?.length === 1 && t.changes.some((ch) => ch.kind === "insert"));
  const feeds = await feedsOfTables(c, candidates);
  for (const t of candidates) {
    const column = t.key![0]!;
    const feed = feedOfColumn(feeds, t.schema, t.name, column);
    if (feed === undefined) continue;
    const old = t.changes.flatMap((ch) => (ch.kind === "insert" && ch.row[column] != null ? [ch.row[column]!] : []));
    const fresh = await drawValues(c, feed, old.length);
    maps.set(`${t.schema}.${t.name}`, { column, map: new Map(old.map((k, i) => [k, fresh[i]!])) });
  }
  if (maps.size === 0) return { diff, remapped: 0 };
  const fks = await query<{ from: string; col: string; to: string; refcol: string }>(
    c,
    `SELECT cn.nspname || '.' || cr.relname AS from, a.attname AS col, rn.nspname || '.' || rr.relname AS to, ra.attname AS refcol
       FROM pg_constraint k
       JOIN pg_class cr ON cr.oid = k.conrelid JOIN pg_namespace cn ON cn.oid = cr.relnamespace
       JOIN pg_class rr ON rr.oid = k.confrelid JOIN pg_namespace rn ON rn.oid = rr.relnamespace
       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
       JOIN pg_attribute ra ON ra.attrelid = k.confrelid AND ra.attnum = k.confkey[1]
      WHERE k.contype = 'f' AND array_length(k.conkey, 1) = 1`,
  );
  const rewrite = (table: string, values: RowValues): RowValues => {
    const out: Record<string, string | null> = { ...values };
    const own = maps.get(table);
    if (own !== undefined && out[own.column] != null && own.map.has(out[own.column]!)) out[own.column] = own.map.get(out[own.column]!)!;
    for (const fk of fks.rows.filter((f) => f.from === table)) {
      const target = maps.get(fk.to);
      const v = out[fk.col];
      if (target !== undefined && target.column === fk.refcol && v != null && target.map.has(v)) out[fk.col] = target.map.get(v)!;
    }
    return out;
  };
  let remapped = 0;
  for (const m of maps.values()) remapped += m.map.size;
  const tables: TableChanges[] = diff.tables.map((t) => {
    const name = `${t.schema}.${t.name}`;
    const changes = t.changes.map((ch): RowChange => {
      if (ch.kind === "insert") return { kind: "insert", row: rewrite(name, ch.row) };
      // Only foreign keys in updated values can point at re-keyed rows; the key of an existing row stays.
      if (ch.kind === "update") return { ...ch, new: Object.fromEntries(Object.entries(rewrite(name, { ...ch.new })).filter(([k]) => k in ch.new)) };
      return ch;
    });
    return { ...t, changes };
  });
  return { diff: { ...diff, tables }, remapped };
}
