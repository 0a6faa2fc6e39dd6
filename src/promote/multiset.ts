/**
 * Promotion and rollback of tables without a key (no primary key, no
 * non-null unique key). Such a table is a multiset: its rows have no
 * identity but all their values, and identical rows may repeat. A promotion
 * stores every row it wrote to one and every row it deleted from one whole,
 * as production held it (`to_jsonb` of the row, from the statement's own
 * RETURNING), one image per row, so duplicates count: in
 * `airlock.row_images` with an empty key (`{}`), `post`/`insert` for a row
 * written and `pre`/`delete` for a row deleted. A rollback removes one
 * matching row per inserted image and puts each deleted row back, so the
 * table ends as the multiset it was; it refuses (a conflict) when fewer rows
 * match an inserted image than the promotion wrote.
 *
 * Rows are matched by the text of their jsonb image, compared by the server
 * and never parsed in between (a JSON number in JavaScript would lose a
 * bigint's digits and a numeric's scale). Conflicts with production's own
 * changes since the snapshot cannot be detected for such tables at
 * promotion: NO_KEY is a danger hazard that says so (src/diff/hazards.ts).
 */
import type pg from "pg";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import type { WholeRow } from "../apply/statements.ts";
import { ownRowsIn, qualified, writableColumns } from "../pg/table-names.ts";
import { plural } from "../format/plural.ts";

/** Whole-row images are filed under this key: they have none. */
export const NO_KEY_IMAGE = "{}";

/** Stores the whole rows a promotion wrote to or deleted from keyless tables (inside its transaction). */
export async function saveWholeRowImages(c: pg.ClientBase, promotionId: string, rows: readonly WholeRow[]): Promise<void> {
  if (rows.length === 0) return;
  const images = rows.map((r) => ({ s: r.schema, t: r.table, k: r.op === "insert" ? "post" : "pre", o: r.op, r: r.row }));
  await query(
    c,
    `INSERT INTO airlock.row_images (promotion_id, table_schema, table_name, kind, op, key, row)
     SELECT $1, x.s, x.t, x.k, x.o, $2::jsonb, x.r::jsonb FROM jsonb_to_recordset($3::jsonb) AS x(s text, t text, k text, o text, r text)`,
    [promotionId, NO_KEY_IMAGE, JSON.stringify(images)],
  );
}

/** A keyless table a promotion wrote to or deleted from, with how many whole-row images of each kind it saved. */
export interface WholeRowTable {
  readonly schema: string;
  readonly table: string;
  readonly inserted: number;
  readonly deleted: number;
}

/** The keyless tables of a promotion's whole-row images. */
export async function wholeRowTables(c: pg.ClientBase, promotionId: string): Promise<WholeRowTable[]> {
  const r = await query<{ schema: string; table: string; inserted: number; deleted: number }>(
    c,
    `SELECT table_schema AS schema, table_name AS table, count(*) FILTER (WHERE op = 'insert')::int AS inserted, count(*) FILTER (WHERE op = 'delete')::int AS deleted
       FROM airlock.row_images WHERE promotion_id = $1 AND key = $2::jsonb GROUP BY 1, 2 ORDER BY 1, 2`,
    [promotionId, NO_KEY_IMAGE],
  );
  return r.rows;
}

/** The inserted images of one table ($3.$4), by row text, with how many times each was written. */
const WANTED = `SELECT row::text AS img, count(*) AS m FROM airlock.row_images
                 WHERE promotion_id = $1 AND key = $2::jsonb AND op = 'insert' AND table_schema = $3 AND table_name = $4 GROUP BY 1`;

/**
 * Rows the promotion wrote to keyless tables that production no longer holds as often as it wrote them
 * (deleted or changed since): each is a conflict, described for the message.
 */
export async function missingWholeRows(c: pg.ClientBase, promotionId: string, tables: readonly WholeRowTable[]): Promise<string[]> {
  const out: string[] = [];
  // Each table's own rows: a row of a table inheriting from it, read through it, has an image like its own.
  const rowsOf = await ownRowsIn(c, tables);
  for (const t of tables.filter((x) => x.inserted > 0)) {
    const r = await query<{ img: string; m: number; have: number }>(
      c,
      `WITH wanted AS (${WANTED})
       SELECT w.img, w.m::int AS m, (SELECT count(*) FROM ${rowsOf(t.schema, t.table)} r WHERE to_jsonb(r)::text = w.img)::int AS have FROM wanted w`,
      [promotionId, NO_KEY_IMAGE, t.schema, t.table],
    );
    for (const x of r.rows) if (x.have < x.m) out.push(`${t.schema}.${t.table} ${x.img} (written ${x.m}×, ${x.have} left; the table has no key)`);
  }
  return out;
}

/** Removes one matching row per inserted image of each keyless table; returns how many rows it removed. */
export async function removeInsertedWholeRows(c: pg.ClientBase, promotionId: string, tables: readonly WholeRowTable[]): Promise<number> {
  let removed = 0;
  const rowsOf = await ownRowsIn(c, tables);
  for (const t of tables.filter((x) => x.inserted > 0)) {
    const name = rowsOf(t.schema, t.table);
    // Which of identical rows goes does not matter; where each is (partition and ctid) says which one.
    const r = await query(
      c,
      `WITH wanted AS (${WANTED}),
            present AS (SELECT r.tableoid AS t, r.ctid AS c, to_jsonb(r)::text AS img, row_number() OVER (PARTITION BY to_jsonb(r)::text) AS n
                          FROM ${name} r WHERE to_jsonb(r)::text IN (SELECT img FROM wanted))
       DELETE FROM ${name} WHERE (tableoid, ctid) IN (SELECT p.t, p.c FROM present p JOIN wanted w ON w.img = p.img WHERE p.n <= w.m)`,
      [promotionId, NO_KEY_IMAGE, t.schema, t.table],
    );
    // missingWholeRows checked this before anything changed; a writer in between is caught here.
    if ((r.rowCount ?? 0) !== t.inserted) {
      throw new AirlockError(
        "AIRLOCK_CONFLICT",
        `${t.schema}.${t.table} holds only ${r.rowCount ?? 0} of the ${plural(t.inserted, "row")} promotion ${promotionId} wrote to it; nothing was rolled back`,
        {
          hint: "resolve those rows by hand, or leave the promotion in place",
          exitCode: EXIT_REFUSED,
        },
      );
    }
    removed += t.inserted;
  }
  return removed;
}

/** Puts back every row the promotion deleted from keyless tables, as it was; returns how many. */
export async function restoreDeletedWholeRows(c: pg.ClientBase, promotionId: string, tables: readonly WholeRowTable[]): Promise<number> {
  let restored = 0;
  for (const t of tables.filter((x) => x.deleted > 0)) {
    const name = qualified(t.schema, t.table);
    const list = (await writableColumns(c, name)).map(quoteIdent);
    const images = `FROM airlock.row_images i WHERE i.promotion_id = $1 AND i.key = $2::jsonb AND i.op = 'delete' AND i.table_schema = $3 AND i.table_name = $4`;
    // A table with no copyable columns takes a row of defaults per image (its generated columns are computed).
    const sql =
      list.length === 0
        ? `INSERT INTO ${name} SELECT ${images}`
        : `INSERT INTO ${name} (${list.join(", ")}) OVERRIDING SYSTEM VALUE SELECT ${list.map((x) => `p.${x}`).join(", ")} ${images.replace("WHERE", `CROSS JOIN LATERAL jsonb_populate_record(NULL::${name}, i.row) p WHERE`)}`;
    const r = await query(c, sql, [promotionId, NO_KEY_IMAGE, t.schema, t.table]);
    restored += r.rowCount ?? 0;
  }
  return restored;
}
