/**
 * The masking plan: which rule applies to each captured column. Rules name
 * columns that must exist and fit; a column that references a masked key
 * (foreign key) inherits its rule and domain so joins still join.
 */
import type { Problem } from "../config/schema.ts";
import type { CatalogColumn, CatalogTable } from "./catalog.ts";
import { type MaskColumn, columnKey, ruleFitProblem } from "./mask.ts";
import { type MaskRule, describeRule } from "../config/masking-rules.ts";

/** A table as capture will copy it. */
export interface PlannedTable {
  readonly table: CatalogTable;
  /** Columns in COPY order (generated columns are left to the server). */
  readonly columns: readonly MaskColumn[];
  /** The rule per copied column (keep when none). */
  readonly rules: readonly MaskRule[];
  /** Whether each column's rule came from the config (false: keep by default, or inherited). */
  readonly ruled: readonly boolean[];
  /** Indexes of columns whose rule changes values. */
  readonly masked: readonly number[];
  /** Indexes of the key columns in COPY order, or null. */
  readonly keyIndexes: readonly number[] | null;
}

const KEEP: MaskRule = { kind: "keep" };

/** Builds the plan; every unknown column and every rule that cannot fit is a problem. */
export function planMasking(tables: readonly CatalogTable[], rules: Readonly<Record<string, MaskRule>>): { plans: PlannedTable[]; problems: Problem[] } {
  const problems: Problem[] = [];
  const byKey = new Map<string, { table: CatalogTable; column: CatalogColumn }>();
  for (const t of tables) for (const c of t.columns) byKey.set(`${t.schema}.${t.name}.${c.name}`, { table: t, column: c });

  for (const key of Object.keys(rules)) {
    if (byKey.has(key)) continue;
    const [schema, table] = key.split(".");
    const tableExists = tables.some((t) => t.schema === schema && t.name === table);
    problems.push({
      path: `masking.rules.${key}`,
      message: tableExists ? `table ${schema}.${table} has no column ${key.split(".")[2]}` : `no table ${schema}.${table} in production`,
    });
  }

  // A column pointing at a masked column gets the same rule in the same domain.
  const effective = new Map<string, MaskRule>(Object.entries(rules));
  for (let changed = true, rounds = 0; changed && rounds < 10; rounds++) {
    changed = false;
    for (const t of tables) {
      for (const fk of t.foreignKeys) {
        fk.columns.forEach((col, i) => {
          const own = `${t.schema}.${t.name}.${col}`;
          const ref = `${fk.refSchema}.${fk.refTable}.${fk.refColumns[i]}`;
          const refRule = effective.get(ref);
          if (effective.has(own) || refRule === undefined || refRule.kind === "keep") return;
          // The referenced column's own default domain is its key, so both sides mask alike.
          const domain = "domain" in refRule && refRule.domain !== undefined ? refRule.domain : ref;
          effective.set(own, refRule.kind === "null" || refRule.kind === "constant" ? refRule : ({ ...refRule, domain } as MaskRule));
          changed = true;
        });
      }
    }
  }
  const plans = tables.map((t): PlannedTable => {
    const copied = t.columns.filter((c) => !c.generated);
    const columns: MaskColumn[] = copied.map((c) => ({
      schema: t.schema,
      table: t.name,
      column: c.name,
      type: c.type,
      baseType: c.baseType,
      ...(c.maxLength === undefined ? {} : { maxLength: c.maxLength }),
      nullable: c.nullable && !(t.key ?? []).includes(c.name),
      unique: c.unique,
    }));
    const ruleList = columns.map((c) => effective.get(columnKey(c)) ?? KEEP);
    columns.forEach((c, i) => {
      const problem = ruleFitProblem(ruleList[i]!, c);
      if (problem !== undefined) problems.push({ path: `masking.rules.${columnKey(c)}`, message: `${describeRule(ruleList[i]!)} cannot fit: ${problem}` });
    });
    for (const c of t.columns.filter((c) => c.generated)) {
      const k = `${t.schema}.${t.name}.${c.name}`;
      if (rules[k] !== undefined && rules[k]!.kind !== "keep")
        problems.push({ path: `masking.rules.${k}`, message: "a generated column is computed by the server from other columns; mask those instead" });
    }
    return {
      table: t,
      columns,
      rules: ruleList,
      ruled: columns.map((c) => rules[columnKey(c)] !== undefined),
      masked: ruleList.flatMap((r, i) => (r.kind === "keep" ? [] : [i])),
      keyIndexes: t.key === null ? null : t.key.map((k) => copied.findIndex((c) => c.name === k)),
    };
  });
  return { plans, problems };
}
