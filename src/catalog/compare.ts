/**
 * Compares two catalog models object by object: what is missing, what is
 * extra, and which properties differ. Used by replay verification (work
 * against the replayed clone) and by the restore check (production's model,
 * kept in the snapshot, against the restored staging copy).
 */
import type { CatalogModel, CatalogObject } from "./model.ts";
import { changedProperties } from "./alter.ts";
import { columnsOf } from "./column-order.ts";

/** One object that differs. */
export interface CatalogDifference {
  readonly id: string;
  /** "missing" (only in the expected model), "extra" (only in the actual one), or the differing properties. */
  readonly difference: string;
}

/** Options of a comparison. */
export interface CompareOptions {
  /** Leave a property of an object out of the comparison (e.g. the database's privileges, which staging narrows on purpose). */
  readonly ignore?: (o: CatalogObject, property: string) => boolean;
  /** Compare sequences' current values too (a restore must reproduce them; a replay need not). */
  readonly sequenceValues?: boolean;
  /** Compare the order of each table's columns too (a rollback must reproduce it). */
  readonly columnOrder?: boolean;
}

/** The objects in which `actual` differs from `expected`, sorted by id. */
export function compareCatalogs(actual: CatalogModel, expected: CatalogModel, options: CompareOptions = {}): CatalogDifference[] {
  const out: CatalogDifference[] = [];
  const ids = [...new Set([...Object.keys(actual.objects), ...Object.keys(expected.objects)])].sort();
  for (const id of ids) {
    const a = actual.objects[id];
    const e = expected.objects[id];
    if (a === undefined) {
      if (!(options.ignore?.(e!, "*") ?? false)) out.push({ id, difference: "missing" });
      continue;
    }
    if (e === undefined) {
      if (!(options.ignore?.(a, "*") ?? false)) out.push({ id, difference: "extra" });
      continue;
    }
    const props = changedProperties(a, e).filter((p) => !(options.ignore?.(e, p) ?? false));
    if (options.sequenceValues === true && a.kind === "sequence" && e.kind === "sequence" && (a.lastValue !== e.lastValue || a.isCalled !== e.isCalled))
      props.push("value");
    if (options.columnOrder === true && a.kind === "table" && !(options.ignore?.(e, "column order") ?? false)) {
      const order = (m: CatalogModel) =>
        columnsOf(m, id)
          .map((c) => c.name)
          .join(", ");
      if (order(actual) !== order(expected)) props.push(`column order (${order(actual)} instead of ${order(expected)})`);
    }
    if (props.length > 0) out.push({ id, difference: props.join(", ") });
  }
  return out;
}
