/**
 * Column order: a column added by ALTER TABLE lands last, so a plan that
 * drops a column from the middle of a table and adds it back (a rollback)
 * does not reproduce the order; such a table is rebuilt instead.
 */
import { alterableInPlace, changedProperties } from "./alter.ts";
import type { CatalogModel, ColumnObject } from "./model.ts";

/** A table's columns in the model, in column order. */
export function columnsOf(model: CatalogModel, table: string): ColumnObject[] {
  return Object.values(model.objects)
    .filter((o): o is ColumnObject => o.kind === "column" && o.table === table)
    .sort((a, b) => a.position - b.position);
}

/**
 * The tables whose column order the changes from `from` to `to` would not reproduce: a column added
 * back by ALTER TABLE lands last, so a rollback that re-adds a dropped column must rebuild the table.
 * `cannot` lists, with the reason, those a rebuild cannot serve (partitions and inheritance).
 */
export function columnOrderRebuilds(from: CatalogModel, to: CatalogModel): { rebuild: Set<string>; cannot: string[] } {
  const rebuild = new Set<string>();
  const cannot: string[] = [];
  const inherited = new Set(
    Object.values(to.objects).flatMap((o) => (o.kind === "table" ? [...o.inherits, ...(o.partitionOf === null ? [] : [o.partitionOf.parent])] : [])),
  );
  for (const t of Object.values(to.objects)) {
    const was = from.objects[t.id];
    // A table the plan recreates anyway gets its columns in order.
    if (t.kind !== "table" || was?.kind !== "table" || !alterableInPlace(was, t, changedProperties(was, t))) continue;
    const target = columnsOf(to, t.id);
    const kept = columnsOf(from, t.id).filter((c) => {
      const next = to.objects[c.id];
      // A column changed in a way that drops and adds it again lands last, like a new one.
      return next?.kind === "column" && alterableInPlace(c, next, changedProperties(c, next));
    });
    const keptNames = new Set(kept.map((c) => c.name));
    const reached = [...kept.map((c) => c.name), ...target.filter((c) => !keptNames.has(c.name)).map((c) => c.name)];
    if (reached.join("\u0000") === target.map((c) => c.name).join("\u0000")) continue;
    if (t.relkind !== "table" || t.partitionOf !== null || t.inherits.length > 0 || inherited.has(t.id)) {
      cannot.push(
        `${t.id}: its column order (${target.map((c) => c.name).join(", ")}) cannot be restored in place, and a ${t.relkind === "partitioned" || t.partitionOf !== null ? "partitioned table or partition" : "table in an inheritance tree"} is not rebuilt`,
      );
      continue;
    }
    rebuild.add(t.id);
  }
  return { rebuild, cannot };
}
