/**
 * Schema changes as the difference of two catalog models: typed changes
 * (object kind, identity, what changed, forward SQL, the dependents a
 * change forces to be dropped and recreated), ordered by the models' own
 * dependencies. Drops run first (dependents before what they depend on),
 * then creates and alterations (dependencies first); what only holds once
 * the data is in (NOT NULL, constraints, indexes) and code that would fire
 * on the data (triggers, rules, policies) run after the data. The ordering
 * itself is in plan-order.ts.
 */
import { quoteIdent } from "../pg/connect.ts";
import { alterSql, alterableInPlace, changedProperties, decorations } from "./alter.ts";
import { columnsOf } from "./column-order.ts";
import type { CatalogModel, CatalogObject, ObjectKind } from "./model.ts";
import { qualifiedName, tableOf } from "./names.ts";
import { type Step, dependents, lateSteps, topoSort, waitForAfterDataParts } from "./plan-order.ts";
import { columnSql, createSql, dropSql } from "./sql.ts";

/** One typed schema change. */
export interface SchemaChange {
  readonly id: string;
  readonly kind: ObjectKind;
  /** create/drop; alter in place; recreate = drop and create again (definition changed, or forced by a dependency). */
  readonly action: "create" | "drop" | "alter" | "recreate";
  /** Which properties differ (alter/recreate): "definition", "acl", "owner", "comment", "enabled", … */
  readonly changed: readonly string[];
  /** For a recreate forced by another change, the id of that change's object. */
  readonly forcedBy?: string;
  /** The object before (null when created) and after (null when dropped). */
  readonly before: CatalogObject | null;
  readonly after: CatalogObject | null;
  /** Forward SQL, in order; `afterData` ones run after the rows are applied. */
  readonly sql: readonly string[];
  readonly afterData: readonly string[];
}

/** Kinds whose creation waits for the data: what only holds on the final rows, and code that would fire on them. */
const AFTER_DATA_KINDS = new Set<ObjectKind>(["constraint", "index", "trigger", "rule", "policy", "event_trigger"]);
/** Kinds that go after the data unless something the data needs depends on them. */
const LATE_KINDS = new Set<ObjectKind>(["function", "view", "matview", "cast", "operator", "default_acl", "setting"]);
/** Kinds a table's drop takes with it. */
const TABLE_PARTS = new Set<ObjectKind>(["column", "constraint", "index", "trigger", "rule", "policy"]);

function parentOf(o: CatalogObject): string | null {
  if (o.kind === "column") return o.table;
  if (o.kind === "constraint" || o.kind === "index" || o.kind === "trigger" || o.kind === "rule" || o.kind === "policy") return o.on;
  return null;
}

/** Options of a plan. */
export interface PlanOptions {
  /**
   * Tables to drop and create again with the target's column order (see columnOrderRebuilds), their
   * parts and dependents with them. Their rows are the caller's to save before and put back after the
   * plan's first part; NOT NULL is set after the data.
   */
  readonly rebuild?: ReadonlySet<string>;
}

/** The typed changes that turn the schema of `from` into that of `to`. */
export function planSchemaChanges(from: CatalogModel, to: CatalogModel, options: PlanOptions = {}): SchemaChange[] {
  const rebuild = options.rebuild ?? new Set<string>();
  const ids = [...new Set([...Object.keys(from.objects), ...Object.keys(to.objects)])].sort();
  const created = new Set<string>();
  const dropped = new Set<string>();
  const altered = new Map<string, string[]>();
  const recreated = new Map<string, { changed: string[]; forcedBy?: string }>();
  for (const id of ids) {
    const a = from.objects[id];
    const b = to.objects[id];
    if (a === undefined) created.add(id);
    else if (b === undefined) dropped.add(id);
    else {
      const changed = changedProperties(a, b);
      if (changed.length === 0) continue;
      if (alterableInPlace(a, b, changed)) altered.set(id, changed);
      else recreated.set(id, { changed });
    }
  }
  // A rebuilt table is dropped and created again with its parts; its columns are created with it.
  const rebuiltParts: string[] = [];
  for (const id of rebuild) {
    if (from.objects[id]?.kind !== "table" || to.objects[id]?.kind !== "table") continue;
    recreated.set(id, { changed: ["column order"] });
    altered.delete(id);
    for (const o of Object.values(from.objects)) {
      if (parentOf(o) !== id || to.objects[o.id] === undefined || dropped.has(o.id)) continue;
      rebuiltParts.push(o.id);
      altered.delete(o.id);
      if (o.kind !== "column") recreated.set(o.id, { changed: recreated.get(o.id)?.changed ?? [], forcedBy: id });
    }
  }
  // A column whose type changes in place takes the views, rules, policies and triggers over it along.
  const forcing = new Set<string>([...dropped, ...recreated.keys(), ...rebuiltParts]);
  for (const [id, changed] of altered) if (from.objects[id]?.kind === "column" && (changed.includes("type") || changed.includes("collation"))) forcing.add(id);
  const rdeps = dependents(from);
  const queue = [...forcing];
  while (queue.length > 0) {
    const x = queue.shift()!;
    for (const d of rdeps.get(x) ?? []) {
      if (dropped.has(d) || recreated.has(d) || to.objects[d] === undefined) continue;
      const dep = from.objects[d]!;
      // Columns keep their data through their table's changes; a table is not rebuilt for its parts.
      if (dep.kind === "column" || dep.kind === "table") continue;
      // The server rebuilds indexes and constraints over a column whose type it changes.
      if (altered.has(x) && (dep.kind === "index" || dep.kind === "constraint")) continue;
      recreated.set(d, { changed: [], forcedBy: x });
      altered.delete(d);
      queue.push(d);
    }
  }

  const steps: Step[] = [];
  const changes = new Map<string, { action: SchemaChange["action"]; changed: string[]; forcedBy?: string; sql: string[]; afterData: string[] }>();
  const note = (id: string, action: SchemaChange["action"], changed: string[], forcedBy?: string) => {
    if (!changes.has(id)) changes.set(id, { action, changed, ...(forcedBy === undefined ? {} : { forcedBy }), sql: [], afterData: [] });
  };
  for (const id of created) note(id, "create", []);
  for (const id of dropped) note(id, "drop", []);
  for (const [id, c] of recreated) note(id, "recreate", c.changed, c.forcedBy);
  for (const [id, c] of altered) note(id, "alter", c);

  const ownedByRebuilt = (column: string): boolean => {
    const col = from.objects[column];
    return col?.kind === "column" && rebuild.has(col.table);
  };
  // Sequences that survive but whose owning column goes away (or is rebuilt) are released first, or the drop would take them along.
  for (const id of ids) {
    const a = from.objects[id];
    const b = to.objects[id];
    if (a?.kind !== "sequence" || b?.kind !== "sequence" || a.ownedBy === null || (a.ownedBy === b.ownedBy && !ownedByRebuilt(a.ownedBy))) continue;
    steps.push({
      key: `0:${id}:release`,
      id,
      sql: [`ALTER SEQUENCE ${qualifiedName(a.schema, a.name)} OWNED BY NONE`],
      prefersAfterData: false,
      afterData: false,
      deps: new Set(),
    });
  }

  // Drops: of what is gone and of what is rebuilt; parts of a dropped table, and sequences it owns, go with it.
  const toDrop = new Set([...dropped, ...recreated.keys()]);
  const droppedTables = new Set([...toDrop].filter((id) => from.objects[id]?.kind === "table"));
  // A foreign key between two dropped tables is dropped on its own, first: the tables can then go in any order
  // (two tables referencing each other cannot be dropped one after the other otherwise).
  const linksDroppedTables = (o: CatalogObject): boolean => {
    if (o.kind !== "constraint" || o.contype !== "foreign key") return false;
    // It depends on the referenced columns and key: their table.
    const referenced = (from.dependsOn[o.id] ?? [])
      .map((d) => from.objects[d])
      .map((d) => (d === undefined ? undefined : d.kind === "table" ? d.id : (parentOf(d) ?? undefined)));
    return referenced.some((t) => t !== undefined && t !== o.on && droppedTables.has(t));
  };
  const goesWithTable = (o: CatalogObject): boolean => {
    const parent = parentOf(o);
    if (parent !== null && TABLE_PARTS.has(o.kind) && droppedTables.has(parent)) return !linksDroppedTables(o);
    if (o.kind === "sequence" && o.ownedBy !== null && to.objects[o.id] === undefined) {
      const owner = from.objects[o.ownedBy];
      if (owner !== undefined && (toDrop.has(owner.id) || droppedTables.has(parentOf(owner) ?? ""))) return true;
    }
    // A partition goes with its partitioned table.
    if (o.kind === "table" && o.partitionOf !== null && droppedTables.has(o.partitionOf.parent)) return true;
    return false;
  };
  // The step that drops an object: its own, or, for what goes with a table, that table's.
  const dropStepOf = (id: string): string => {
    const o = from.objects[id];
    if (o === undefined || !goesWithTable(o)) return `1:${id}`;
    if (o.kind === "table" && o.partitionOf !== null) return dropStepOf(o.partitionOf.parent);
    const owner = o.kind === "sequence" && o.ownedBy !== null ? from.objects[o.ownedBy] : undefined;
    if (owner !== undefined) return dropStepOf(owner.id);
    const parent = parentOf(o);
    return parent === null ? `1:${id}` : dropStepOf(parent);
  };
  const dropSteps: Step[] = [];
  for (const id of toDrop) {
    const o = from.objects[id]!;
    if (goesWithTable(o)) continue;
    // Whatever depends on it or, for a table, on its parts (and is dropped too, on its own or with its table) is dropped before it.
    const parts =
      o.kind === "table"
        ? Object.values(from.objects)
            .filter((p) => parentOf(p) === id)
            .map((p) => p.id)
        : [];
    const deps = new Set(
      [id, ...parts]
        .flatMap((x) => rdeps.get(x) ?? [])
        .filter((d) => toDrop.has(d))
        .map(dropStepOf),
    );
    deps.delete(`1:${id}`);
    dropSteps.push({ key: `1:${id}`, id, sql: dropSql(from, o), prefersAfterData: false, afterData: false, deps });
  }
  const orderedDrops = topoSort(dropSteps);

  // Creates and alterations, depending on each other through the target model.
  const toCreate = new Set([...created, ...recreated.keys()]);
  const buildSteps: Step[] = [];
  const createdTables = new Set([...toCreate].filter((id) => to.objects[id]?.kind === "table"));
  const stepKey = (id: string) => `2:${id}`;
  const depsOf = (id: string): Set<string> => {
    const out = new Set<string>();
    const self = to.objects[id];
    for (const d of to.dependsOn[id] ?? []) {
      const o = to.objects[d];
      if (o === undefined) continue;
      // A sequence is created before the column that owns it (OWNED BY is set afterwards, as its own step).
      if (self?.kind === "sequence" && o.kind === "column") continue;
      // A created table's columns are created with it.
      const target = o.kind === "column" && createdTables.has(o.table) ? o.table : d;
      out.add(stepKey(target));
    }
    out.delete(stepKey(id));
    return out;
  };
  for (const id of toCreate) {
    const o = to.objects[id]!;
    // Columns of a created table are part of its CREATE TABLE.
    if (o.kind === "column" && createdTables.has(o.table)) continue;
    const sql: string[] = [];
    const after: string[] = [];
    if (o.kind === "column" && o.notNull && o.default === null && o.identity === null && o.generated === null) {
      // Added without NOT NULL, filled by the data, then made NOT NULL: as an agent does it by hand.
      sql.push(`ALTER TABLE ${qualifiedName(tableOf(to, o.table).schema, tableOf(to, o.table).name)} ADD COLUMN ${columnSql(o, false)}`);
      after.push(`ALTER TABLE ${qualifiedName(tableOf(to, o.table).schema, tableOf(to, o.table).name)} ALTER COLUMN ${quoteIdent(o.name)} SET NOT NULL`);
    } else if (o.kind === "table" && rebuild.has(id)) {
      // Rebuilt: created without NOT NULL, refilled by the caller, then made NOT NULL.
      const cols = columnsOf(to, id);
      const loose: CatalogModel = { ...to, objects: { ...to.objects, ...Object.fromEntries(cols.map((col) => [col.id, { ...col, notNull: false }])) } };
      sql.push(...createSql(loose, o));
      for (const col of cols) if (col.notNull) after.push(`ALTER TABLE ${qualifiedName(o.schema, o.name)} ALTER COLUMN ${quoteIdent(col.name)} SET NOT NULL`);
    } else {
      sql.push(...createSql(to, o));
    }
    if (o.kind === "table") for (const col of Object.values(to.objects)) if (col.kind === "column" && col.table === id) sql.push(...decorations(to, col, null));
    sql.push(...decorations(to, o, null));
    const isAfter = AFTER_DATA_KINDS.has(o.kind);
    const deps = depsOf(id);
    // A created table needs what its columns need (their types, the sequences of their defaults).
    if (o.kind === "table")
      for (const col of Object.values(to.objects)) if (col.kind === "column" && col.table === id) for (const d of depsOf(col.id)) deps.add(d);
    deps.delete(stepKey(id));
    buildSteps.push({ key: stepKey(id), id, sql: isAfter ? [] : sql, prefersAfterData: LATE_KINDS.has(o.kind), afterData: isAfter, deps });
    if (isAfter) after.unshift(...sql);
    if (after.length > 0)
      buildSteps.push({ key: `3:${id}`, id, sql: after, prefersAfterData: true, afterData: true, deps: new Set([stepKey(id), ...depsOf(id)]) });
  }
  for (const [id, changed] of altered) {
    const a = from.objects[id]!;
    const b = to.objects[id]!;
    const { sql, afterData } = alterSql(to, a, b, changed);
    buildSteps.push({
      key: stepKey(id),
      id,
      sql,
      prefersAfterData: LATE_KINDS.has(b.kind) || AFTER_DATA_KINDS.has(b.kind),
      afterData: false,
      deps: depsOf(id),
    });
    if (afterData.length > 0) buildSteps.push({ key: `3:${id}`, id, sql: afterData, prefersAfterData: true, afterData: true, deps: new Set([stepKey(id)]) });
  }
  // Sequences moved to another owning column: after that column exists.
  for (const id of ids) {
    const a = from.objects[id];
    const b = to.objects[id];
    if (b?.kind !== "sequence" || b.ownedBy === null || (a?.kind === "sequence" && a.ownedBy === b.ownedBy && !recreated.has(id) && !ownedByRebuilt(a.ownedBy)))
      continue;
    const col = to.objects[b.ownedBy];
    if (col?.kind !== "column") continue;
    const t = tableOf(to, col.table);
    const ownerStep = createdTables.has(col.table) ? stepKey(col.table) : stepKey(col.id);
    buildSteps.push({
      key: `2:${id}:owned-by`,
      id,
      sql: [`ALTER SEQUENCE ${qualifiedName(b.schema, b.name)} OWNED BY ${qualifiedName(t.schema, t.name)}.${quoteIdent(col.name)}`],
      prefersAfterData: false,
      afterData: false,
      deps: new Set([stepKey(id), ownerStep]),
    });
    note(id, "alter", ["ownedBy"]);
  }

  waitForAfterDataParts(buildSteps);
  const ordered = topoSort(buildSteps);
  const late = lateSteps(ordered);

  // One record per step, in the order the steps run (before the data, then after it); consecutive steps of
  // one object are merged. A recreate shows up twice: its drop among the drops, its create later.
  const records: SchemaChange[] = [];
  const run = [...steps, ...orderedDrops, ...ordered.filter((x) => !late.has(x.key)), ...ordered.filter((x) => late.has(x.key))];
  for (const st of run) {
    const c = changes.get(st.id);
    if (c === undefined || st.sql.length === 0) continue;
    const isLate = late.has(st.key);
    const last = records[records.length - 1];
    if (last !== undefined && last.id === st.id && last.afterData.length > 0 === isLate) {
      records[records.length - 1] = {
        ...last,
        sql: isLate ? last.sql : [...last.sql, ...st.sql],
        afterData: isLate ? [...last.afterData, ...st.sql] : last.afterData,
      };
      continue;
    }
    records.push({
      id: st.id,
      kind: (to.objects[st.id] ?? from.objects[st.id])!.kind,
      action: c.action,
      changed: c.changed,
      ...(c.forcedBy === undefined ? {} : { forcedBy: c.forcedBy }),
      before: from.objects[st.id] ?? null,
      after: to.objects[st.id] ?? null,
      sql: isLate ? [] : st.sql,
      afterData: isLate ? st.sql : [],
    });
  }
  return records;
}

/** The records of a plan merged by object: one change per object, its SQL in running order (for hazards and review). */
export function changesByObject<T extends { readonly id: string; readonly sql: readonly string[]; readonly afterData: readonly string[] }>(
  records: readonly T[],
): T[] {
  const out = new Map<string, T>();
  for (const r of records) {
    const seen = out.get(r.id);
    out.set(r.id, seen === undefined ? r : { ...seen, sql: [...seen.sql, ...r.sql], afterData: [...seen.afterData, ...r.afterData] });
  }
  return [...out.values()];
}

/** Statements in the order a whole plan runs them: every change's SQL, then every change's after-data SQL. */
export function planStatements(changes: readonly SchemaChange[]): { before: string[]; after: string[] } {
  return { before: changes.flatMap((c) => [...c.sql]), after: changes.flatMap((c) => [...c.afterData]) };
}
