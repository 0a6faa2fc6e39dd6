/**
 * Replay verification: the diff is applied to a fresh clone of base by the
 * function promotion uses (src/apply/apply.ts), as the diff's unprivileged
 * replayer, and the clone is compared with work: the whole catalog model
 * and every table's rows (by multiset checksums first, row by row where
 * they differ). Only a match makes a diff verified.
 */
import type pg from "pg";
import { applyDiff } from "../apply/apply.ts";
import { compareCatalogs } from "../catalog/compare.ts";
import type { CatalogModel, RoleMapping } from "../catalog/model.ts";
import { type PgTarget, query, quoteIdent, withClient } from "../pg/connect.ts";
import { ownRows } from "../pg/table-names.ts";
import { type DiffRoles, catalogOf, cloneBase, transactionOn } from "./clones.ts";
import { type TableShape, diffTable, readShapes } from "./data-diff.ts";
import type { Diff, Verification } from "./types.ts";

/** The phases of a replay, for a terminal. */
export type ReplayProgress = { readonly phase: "replay" | "verify" };

/**
 * Per-table multiset checksums: the row count and the sums of two 64-bit
 * hashes of each row (hash_record_extended with two seeds, no text, no sort,
 * no memory). Equal values hash alike, so a change only in how a value is
 * written (1.5 vs 1.50 in an unconstrained numeric) is not seen here. A table
 * with a type that cannot be hashed falls back to the md5 of its row text.
 */
export async function tableChecksums(c: pg.ClientBase, shapes: readonly TableShape[]): Promise<Map<string, string>> {
  // Enums (and reg* types) hash by OID, which differs between databases: those tables use row text.
  const byOid = new Set(
    (
      await query<{ t: string }>(
        c,
        `SELECT DISTINCT n.nspname || '.' || r.relname AS t FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid JOIN pg_namespace n ON n.oid = r.relnamespace
           JOIN pg_type ty ON ty.oid = a.atttypid LEFT JOIN pg_type el ON el.oid = ty.typelem
          WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p')
            AND (ty.typtype IN ('e', 'd', 'c', 'r', 'm') OR el.typtype IN ('e', 'd', 'c') OR ty.typname LIKE 'reg%' OR ty.typname = 'oid')`,
      )
    ).rows.map((x) => x.t),
  );
  const out = new Map<string, string>();
  for (const s of shapes) {
    const cols = [...s.columns].sort((a, b) => (a.name < b.name ? -1 : 1)).map((x) => quoteIdent(x.name));
    const table = ownRows(s.schema, s.name, s.partitioned);
    const row = `ROW(${cols.join(", ")})`;
    let r = byOid.has(`${s.schema}.${s.name}`)
      ? undefined
      : await c
          .query<{ n: string; h: string | null }>(
            `SELECT count(*)::text AS n, sum(hash_record_extended(${row}, 0)::numeric) || '.' || sum(hash_record_extended(${row}, 1)::numeric) AS h FROM ${table}`,
          )
          .catch(() => undefined);
    if (r === undefined) {
      r = await query<{ n: string; h: string | null }>(
        c,
        `SELECT count(*)::text AS n, sum(('x' || left(h, 16))::bit(64)::bigint::numeric) || '.' || sum(('x' || right(h, 16))::bit(64)::bigint::numeric) AS h
           FROM (SELECT md5(${row}::text) AS h FROM ${table}) x`,
      );
    }
    out.set(`${s.schema}.${s.name}`, `${r.rows[0]!.n}:${r.rows[0]!.h ?? ""}`);
  }
  return out;
}

/**
 * Replays the diff on a fresh clone of base and compares the result with
 * work: the whole catalog model (every object, its definition, owner,
 * privileges, comment, state) and every table's rows. The replay runs as
 * the replayer; everything is read as the reader.
 */
export async function verifyByReplay(
  base: PgTarget,
  work: PgTarget,
  workModel: CatalogModel,
  mapping: RoleMapping,
  roles: DiffRoles,
  diff: Diff,
  onProgress?: (p: ReplayProgress) => void,
): Promise<Verification> {
  onProgress?.({ phase: "replay" });
  const clone = await cloneBase(base, "replay", roles);
  try {
    try {
      await transactionOn(clone.replay, async (c) => {
        await applyDiff(c, diff, { replay: true });
      });
    } catch (e) {
      return { verified: false, mismatches: [], schemaDifference: [], error: e instanceof Error ? e.message : String(e) };
    }
    onProgress?.({ phase: "verify" });
    // The replayer's settings in this database stand for the agent's. Settings of a role everywhere are not
    // replayed on a shared server (they are applied by promotion only, as danger hazards).
    const replayed = await catalogOf(clone.read, { ...mapping, settingsRole: roles.replayer.name });
    const schemaDifference = compareCatalogs(replayed, workModel, { ignore: (o) => o.kind === "setting" && o.scope === "role" && !o.inDatabase }).map(
      (d) => `${d.id}: ${d.difference}`,
    );
    const mismatches: Array<{ table: string; keys: string[] }> = [];
    await withClient(clone.read, { step: "diff", readOnly: true }, (cc) =>
      withClient(work, { step: "diff", readOnly: true }, async (wc) => {
        const { shapes } = await readShapes(wc);
        const [a, b] = [await tableChecksums(cc, shapes), await tableChecksums(wc, shapes)];
        for (const s of shapes) {
          const id = `${s.schema}.${s.name}`;
          if (a.get(id) === b.get(id)) continue;
          const d = await diffTable(cc, wc, s);
          mismatches.push({ table: id, keys: d.changes.slice(0, 5).map((ch) => JSON.stringify(ch.kind === "insert" ? ch.row : ch.key)) });
        }
      }),
    );
    return { verified: schemaDifference.length === 0 && mismatches.length === 0, mismatches, schemaDifference };
  } finally {
    await clone.drop();
  }
}
