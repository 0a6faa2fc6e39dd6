/**
 * The order a schema plan runs its steps in: the dependents of each object
 * in a model (what a drop or rebuild takes along), each step after the
 * steps it depends on (a topological sort, deterministic on ties), and
 * which of them run after the data is applied (what must, what depends on
 * those, and the late kinds nothing before the data needs). plan.ts turns
 * changes into steps; this file orders them.
 */
import type { CatalogModel } from "./model.ts";

/** One step of a plan: an object's SQL and the keys of the steps it must follow. */
export interface Step {
  readonly key: string;
  readonly id: string;
  readonly sql: string[];
  /** Runs after the data when nothing that must run before the data depends on it. */
  readonly prefersAfterData: boolean;
  /** Must run after the data (NOT NULL, constraints, indexes). */
  readonly afterData: boolean;
  readonly deps: Set<string>;
}

/** ids that depend on each id, in a model. */
export function dependents(model: CatalogModel): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [id, deps] of Object.entries(model.dependsOn)) {
    const o = model.objects[id];
    for (const d of deps) {
      // A sequence owned by a column is not a dependent that must be rebuilt with it (ownership is moved separately).
      if (o?.kind === "sequence") continue;
      const list = out.get(d) ?? [];
      list.push(id);
      out.set(d, list);
    }
  }
  return out;
}

/** Orders steps so that each comes after the steps it depends on; ties broken by key, so the order is deterministic. */
export function topoSort(steps: readonly Step[]): Step[] {
  const byKey = new Map(steps.map((s) => [s.key, s]));
  const done = new Set<string>();
  const visiting = new Set<string>();
  const out: Step[] = [];
  const visit = (s: Step) => {
    if (done.has(s.key) || visiting.has(s.key)) return; // a cycle: keep the order found so far
    visiting.add(s.key);
    for (const d of [...s.deps].sort()) {
      const dep = byKey.get(d);
      if (dep !== undefined) visit(dep);
    }
    visiting.delete(s.key);
    done.add(s.key);
    out.push(s);
  };
  for (const s of [...steps].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) visit(s);
  return out;
}

/**
 * Makes each step that runs after the data wait for the after-data part of what it depends on: a foreign key for
 * the key it references (created after the data too), whatever the names say about their order.
 */
export function waitForAfterDataParts(steps: readonly Step[]): void {
  const afterParts = new Set(steps.filter((x) => x.key.startsWith("3:")).map((x) => x.key));
  for (const st of steps) {
    if (!st.afterData) continue;
    for (const d of [...st.deps]) if (d.startsWith("2:") && afterParts.has(`3:${d.slice(2)}`) && `3:${d.slice(2)}` !== st.key) st.deps.add(`3:${d.slice(2)}`);
  }
}

/**
 * Which of the ordered steps run after the data: those that must and what depends on them, and the late kinds
 * (code, views) unless something that runs before the data needs them.
 */
export function lateSteps(ordered: readonly Step[]): Set<string> {
  const byKey = new Map(ordered.map((x) => [x.key, x]));
  const late = new Set<string>();
  const closeLate = () => {
    for (const x of ordered) if (x.afterData || [...x.deps].some((d) => late.has(d))) late.add(x.key);
  };
  closeLate();
  const neededEarly = new Set<string>();
  const need = (key: string) => {
    if (neededEarly.has(key)) return;
    neededEarly.add(key);
    for (const d of byKey.get(key)?.deps ?? []) need(d);
  };
  for (const x of ordered) if (!late.has(x.key) && !x.prefersAfterData) for (const d of x.deps) need(d);
  for (const x of ordered) if (x.prefersAfterData && !neededEarly.has(x.key)) late.add(x.key);
  closeLate();
  return late;
}
