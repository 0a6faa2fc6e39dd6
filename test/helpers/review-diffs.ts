/**
 * The diffs review.md and review.html are rendered from in the review tests:
 * an incident-like diff (an agent bulk-deleted gallery images, re-inserted 282
 * and wrote a masked email back into guests), and the same diff with an
 * agent-written SECURITY DEFINER function that runs any SQL and a view whose
 * comment is hostile.
 */
import type { Diff, Hazard, RowChange, SchemaChangeRecord } from "../../src/diff/types.ts";

export const ID = "3f1c9a7be20d44c1a9e5b6f7081d2c3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192";
export const SCRIPT = "<script>alert(1)</script>";
export const PIPED = "left | right\nsecond line";
export const LONG = "x".repeat(120);

/** The incident diff: 290 gallery images deleted, 282 inserted, a masked email written back, an index; verified or not. */
export function incidentDiff(verified = true): Diff {
  const deletes: RowChange[] = Array.from({ length: 290 }, (_, i) => ({
    kind: "delete",
    key: { id: String(i + 1) },
    old: { id: String(i + 1), guest_id: String((i % 40) + 1), url: `https://img.example/${i + 1}.jpg`, caption: i === 0 ? PIPED : null },
  }));
  const inserts: RowChange[] = Array.from({ length: 282 }, (_, i) => ({
    kind: "insert",
    row: {
      id: String(1000 + i),
      guest_id: "7",
      url: `https://img.example/new/${i}.jpg`,
      caption: i === 0 ? SCRIPT : i === 1 ? LONG : i === 2 ? "" : `photo ${i}`,
    },
  }));
  return {
    formatVersion: 2,
    session: "fix-gallery-2",
    snapshot: "snap-20250601",
    createdAt: "2025-06-01T12:00:00.000Z",
    schemaChanges: [
      {
        id: "index public.gallery_images_guest_id_idx",
        kind: "index",
        action: "create",
        changed: [],
        sql: [],
        afterData: ["CREATE INDEX gallery_images_guest_id_idx ON public.gallery_images USING btree (guest_id)"],
      },
    ],
    tables: [
      {
        schema: "public",
        name: "gallery_images",
        columns: [
          { name: "id", type: "integer" },
          { name: "guest_id", type: "integer" },
          { name: "url", type: "text" },
          { name: "caption", type: "text" },
        ],
        key: ["id"],
        keyKind: "primary",
        rowsBefore: 300,
        changes: [...deletes, ...inserts],
      },
      {
        schema: "public",
        name: "guests",
        columns: [
          { name: "id", type: "integer" },
          { name: "email", type: "text" },
          { name: "note", type: "text" },
        ],
        key: ["id"],
        keyKind: "primary",
        rowsBefore: 40,
        changes: [
          { kind: "update", key: { id: "7" }, old: { email: "ada.guest@example.com", note: null }, new: { email: "user7@masked.invalid", note: SCRIPT } },
        ],
      },
    ],
    hazards: [
      { code: "LARGE_INSERT", severity: "warn", object: "public.gallery_images", message: "282 rows inserted", count: 282 },
      { code: "BULK_DELETE", severity: "danger", object: "public.gallery_images", message: "290 of 300 rows deleted (97%)", count: 290 },
      { code: "NEW_INDEX", severity: "info", object: "public.gallery_images_guest_id_idx", message: "index built on promote" },
      { code: "MASKED_VALUE", severity: "danger", object: "public.guests.email", message: "1 value looks like masking output | <b>check</b>", count: 1 },
    ],
    verification: verified
      ? { verified: true, mismatches: [], schemaDifference: [] }
      : { verified: false, mismatches: [{ table: "public.guests", keys: ["(7)"] }], schemaDifference: [], error: "replay stopped" },
    summary: { inserts: 282, updates: 1, deletes: 290, ddl: 1 },
  };
}

export const RUN_SQL_BODY = [
  "CREATE OR REPLACE FUNCTION public.run_sql(q text)",
  " RETURNS void",
  " LANGUAGE plpgsql",
  " SECURITY DEFINER",
  "AS $function$",
  "BEGIN",
  "  -- looks harmless: ``` and ```` fences, </pre><script>alert(1)</script>",
  "  EXECUTE q;",
  "END",
  "$function$;",
  "GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;",
].join("\n");
export const HOSTILE_COMMENT = "COMMENT ON VIEW public.v IS '</pre><script>alert(1)</script>``` <img src=x onerror=alert(2)>';";

/** The incident diff plus an agent-written SECURITY DEFINER function that runs any SQL, and a view whose comment is hostile. */
export function functionDiff(): Diff {
  const diff = incidentDiff();
  const fn: SchemaChangeRecord = {
    id: "function public.run_sql(q text)",
    kind: "function",
    action: "create",
    changed: [],
    sql: [RUN_SQL_BODY.split("\nGRANT")[0]!.replace(/;$/, ""), "GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC"],
    afterData: [],
  };
  const view: SchemaChangeRecord = {
    id: "view public.v",
    kind: "view",
    action: "recreate",
    changed: [],
    forcedBy: "column public.guests.email",
    sql: ["DROP VIEW public.v", "CREATE VIEW public.v AS SELECT id, email FROM public.guests", HOSTILE_COMMENT.replace(/;$/, "")],
    afterData: [],
  };
  const fnHazards: Hazard[] = [
    {
      code: "FUNCTION",
      severity: "danger",
      object: fn.id,
      message: "creates function public.run_sql(q text) (plpgsql): its code would run in production",
      definition: RUN_SQL_BODY,
    },
    {
      code: "SECURITY_DEFINER",
      severity: "danger",
      object: fn.id,
      message: "public.run_sql(q text) is SECURITY DEFINER: it runs with the rights of its owner in production, whoever calls it",
      definition: RUN_SQL_BODY,
    },
    {
      code: "GRANT_PUBLIC",
      severity: "danger",
      object: fn.id,
      message: "grants or revokes privileges on function public.run_sql(q text) for PUBLIC (every role): PUBLIC:X",
      definition: "GRANT EXECUTE ON FUNCTION public.run_sql(q text) TO PUBLIC;",
    },
    { code: "VIEW", severity: "danger", object: view.id, message: "changes view public.v", definition: HOSTILE_COMMENT },
  ];
  return {
    ...diff,
    schemaChanges: [fn, ...diff.schemaChanges, view],
    hazards: [...diff.hazards, ...fnHazards],
    summary: { ...diff.summary, ddl: 6 },
  };
}
