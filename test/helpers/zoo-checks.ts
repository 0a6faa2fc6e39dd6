/**
 * What the schema zoo test (test/zoo.test.ts) checks after each edit's
 * promotion, as lists of problems (none: the invariant holds): production
 * equals work on the touched objects and nothing else changed, and
 * production's next default insert into every touched table succeeds; and
 * how it runs the edits, a few at a time.
 */
import { type PgTarget, withClient } from "../../src/pg/connect.ts";
import {
  type State,
  catalog,
  checksums,
  differences,
  indexes,
  ownerless,
  ownersOf,
  recordDiff,
  relations,
  rows,
  rowsWithout,
  sequenceValues,
  without,
} from "./database-state.ts";
import { type Edit, NEXT_INSERT } from "../fixtures/wild/zoo-edits.ts";

/** After promotion: production (`prod`, a copy of `production`, the database the snapshot was taken from) equals work on the touched objects, and nothing else changed. */
export async function promotionProblems(
  edit: Edit,
  production: PgTarget,
  prod: PgTarget,
  work: string,
  before: State,
  rekeyBefore: Record<string, string[]>,
): Promise<string[]> {
  const problems: string[] = [];
  // The whole catalog model; production's application role and the agent are the same owner.
  const prodOwners = await ownersOf(prod);
  problems.push(...differences(await catalog(prod, prodOwners), await catalog(work, [...prodOwners, ...(await ownersOf(work))])).map((x) => `catalog ${x}`));
  // Column order and populated state (not in the model's comparison), and indexes, by name.
  const prodRel = await relations(prod);
  problems.push(...recordDiff(ownerless(prodRel), ownerless(await relations(work))).map((x) => `relation ${x}`));
  problems.push(...recordDiff(await indexes(prod), await indexes(work)).map((x) => `index ${x}`));
  // Every relation, recreated or not, still belongs to the application role.
  problems.push(
    ...Object.entries(prodRel)
      .filter(([, v]) => !v.includes(" owner=zoo_app "))
      .map(([k, v]) => `owner of ${k} is not zoo_app: ${v}`),
  );
  // Rows: every touched table equals work (with --rekey: its rows before plus the agent's, keys aside); every other table is as it was.
  const [prodSums, workSums] = [await checksums(prod), await checksums(work)];
  for (const t of Object.keys({ ...prodSums, ...before.checksums }).filter((x) => !x.startsWith("matview "))) {
    if (!edit.touched.includes(t)) {
      if (prodSums[t] !== before.checksums[t])
        problems.push(`rows of ${t} changed although the edit did not touch it: ${before.checksums[t]} → ${prodSums[t]}`);
    } else if (edit.rekey === undefined && prodSums[t] !== workSums[t]) {
      problems.push(`rows of ${t} differ from work: work ${workSums[t]}, production ${prodSums[t]}`);
    }
  }
  if (edit.rekey !== undefined) {
    for (const [table, keys] of Object.entries(edit.rekey)) {
      const inserted = without(await rowsWithout(work, table, keys), await rowsWithout(production, table, keys));
      const expected = [...rekeyBefore[table]!, ...inserted].sort();
      const actual = await rowsWithout(prod, table, keys);
      if (JSON.stringify(actual) !== JSON.stringify(expected))
        problems.push(
          `rows of ${table} (keys aside): missing ${JSON.stringify(without(expected, actual))}, extra ${JSON.stringify(without(actual, expected))}`,
        );
    }
    const linked = await rows(
      prod,
      `SELECT count(*)::int AS n FROM shop.orders o JOIN "Sales"."Order Lines" l ON l.line_id = o.first_line_id AND l.order_id = o.id JOIN shop.products p ON p.id = l.product_id WHERE o.remark = 'vom Agenten 🤖' AND p.sku = 'KI-003'`,
    );
    if (linked[0]!.n !== 1) problems.push("the rekeyed order, its first line and the new product do not point at each other");
  }
  return problems;
}

/** Production's next insert into every touched table, each in a savepoint, all rolled back; the sequences they advanced are put back. */
export async function nextInsertProblems(edit: Edit, prod: PgTarget): Promise<string[]> {
  const seqs = await sequenceValues(prod);
  const failures: string[] = [];
  await withClient(prod, { step: "test", searchPath: "public" }, async (c) => {
    await c.query("BEGIN");
    for (const t of edit.touched) {
      const sql = NEXT_INSERT[t];
      if (sql === undefined) throw new Error(`no next insert for ${t}`);
      await c.query("SAVEPOINT probe");
      try {
        await c.query(sql);
        await c.query("RELEASE SAVEPOINT probe");
      } catch (e) {
        failures.push(`${t}: ${(e as Error).message}`);
        await c.query("ROLLBACK TO SAVEPOINT probe");
      }
    }
    await c.query("ROLLBACK");
    // nextval is not transactional: the sequences go back to where the promotion left them.
    for (const q of seqs) await c.query("SELECT setval($1::regclass, $2::bigint, $3)", [q.seq, q.v, q.called]);
  });
  return failures;
}

/** Runs `fn` over `items`, at most `limit` at once; results in order. */
export function limited<T, R>(items: readonly T[], limit: number, fn: (x: T) => Promise<R>): Array<Promise<R>> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return items.map(async (x) => {
    if (running >= limit) await new Promise<void>((res) => waiting.push(res));
    running++;
    try {
      return await fn(x);
    } finally {
      running--;
      waiting.shift()?.();
    }
  });
}
