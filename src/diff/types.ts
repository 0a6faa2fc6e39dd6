/**
 * The promotion diff as data: what the agent changed between a session's
 * base and work, as a readonly discriminated structure with a canonical JSON
 * form whose sha256 is the diff's id.
 */
import { z } from "zod";
import { OBJECT_KINDS } from "../catalog/model-schema.ts";
import type { SchemaChange } from "../catalog/plan.ts";

/** A row's values by column name, in Postgres text form (null is SQL NULL). */
export type RowValues = Readonly<Record<string, string | null>>;

/** One row-level change. */
export type RowChange =
  | { readonly kind: "insert"; readonly row: RowValues }
  | { readonly kind: "update"; readonly key: RowValues; readonly old: RowValues; readonly new: RowValues }
  | { readonly kind: "delete"; readonly key: RowValues; readonly old: RowValues };

/** The data changes of one table. */
export interface TableChanges {
  readonly schema: string;
  readonly name: string;
  /** Columns as they are after the schema changes, with their types (for casts). */
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string }>;
  /** The key compared by; null for a table without one (compared as a multiset: keys are whole rows). */
  readonly key: readonly string[] | null;
  readonly keyKind: "primary" | "unique" | null;
  /**
   * A partitioned table: its rows are its partitions', read and written through it. Absent for a plain table,
   * whose own rows are written `ONLY` it (never its inheritance children's: src/pg/table-names.ts, ownRows).
   */
  readonly partitioned?: true;
  /** Rows in the table before the change (base), for hazard ratios. */
  readonly rowsBefore: number;
  readonly changes: readonly RowChange[];
}

/** Severity of a hazard; every `danger` must be accepted by name at approval. */
export type HazardSeverity = "info" | "warn" | "danger";

/** A risk of a diff, spelled out. */
export interface Hazard {
  /** Stable code, e.g. BULK_DELETE, ALL_ROWS_DELETED, DROP_TABLE, MASKED_VALUE. */
  readonly code: string;
  readonly severity: HazardSeverity;
  /** The affected object, e.g. "public.gallery_images" or "public.guests.email". */
  readonly object: string;
  readonly message: string;
  readonly count?: number;
  /** The full definition a reviewer must read: a function body, a policy's expressions, a setting and its value, the SQL. */
  readonly definition?: string;
}

/**
 * One typed schema change as the diff records it: a planned change (src/catalog/plan.ts) without the
 * catalog objects themselves, plus what promotion needs to know of it.
 */
export type SchemaChangeRecord = Omit<SchemaChange, "before" | "after"> & {
  /** Changes a role's settings for every database of its server: applied by promotion, never replayed on the shared staging server. */
  readonly serverWide?: true;
  /** For tables and columns: which one (promotion saves the data of those it drops). */
  readonly target?: { readonly schema: string; readonly table: string; readonly column?: string };
  /**
   * DDL that evaluates an expression calling functions that are not built in (a column default or generated
   * column filled in for existing rows, a CHECK or domain constraint checked against them, an index expression,
   * a materialized view's query): the functions, and the object whose owner in production the DDL runs as.
   */
  readonly runsCode?: {
    readonly calls: readonly string[];
    readonly as: { readonly kind: "relation" | "type"; readonly schema: string; readonly name: string };
  };
};

/** What replay verification found. */
export interface Verification {
  readonly verified: boolean;
  /** Tables whose replayed rows differ from work, with a few differing keys. */
  readonly mismatches: ReadonlyArray<{ readonly table: string; readonly keys: readonly string[] }>;
  /** Catalog objects that differ between work and the replayed clone ("view public.v: definition"), empty when none. */
  readonly schemaDifference: readonly string[];
  /** Why replay could not run to the end, if it failed. */
  readonly error?: string;
}

/** The whole diff. The sha256 of its canonical JSON, `createdAt` left out, is its id (src/diff/store.ts). */
export interface Diff {
  readonly formatVersion: 2;
  readonly session: string;
  readonly snapshot: string;
  /** When it was first made: stored beside diff.json (created.json), so the same content always has the same id. */
  readonly createdAt: string;
  /** Typed schema changes turning base's catalog into work's, in the order their SQL runs. */
  readonly schemaChanges: readonly SchemaChangeRecord[];
  readonly tables: readonly TableChanges[];
  readonly hazards: readonly Hazard[];
  readonly verification: Verification;
  readonly summary: { readonly inserts: number; readonly updates: number; readonly deletes: number; readonly ddl: number };
}

const strings = z.array(z.string());
const rowValues = z.record(z.string(), z.string().nullable());

const schemaChangeRecordSchema: z.ZodType<SchemaChangeRecord> = z.object({
  id: z.string(),
  kind: z.enum(OBJECT_KINDS),
  action: z.enum(["create", "drop", "alter", "recreate"]),
  changed: strings,
  forcedBy: z.string().optional(),
  sql: strings,
  afterData: strings,
  serverWide: z.literal(true).optional(),
  target: z.object({ schema: z.string(), table: z.string(), column: z.string().optional() }).optional(),
  runsCode: z.object({ calls: strings, as: z.object({ kind: z.enum(["relation", "type"]), schema: z.string(), name: z.string() }) }).optional(),
});

const tableChangesSchema: z.ZodType<TableChanges> = z.object({
  schema: z.string(),
  name: z.string(),
  columns: z.array(z.object({ name: z.string(), type: z.string() })),
  key: strings.nullable(),
  keyKind: z.enum(["primary", "unique"]).nullable(),
  partitioned: z.literal(true).optional(),
  rowsBefore: z.number(),
  changes: z.array(
    z.discriminatedUnion("kind", [
      z.object({ kind: z.literal("insert"), row: rowValues }),
      z.object({ kind: z.literal("update"), key: rowValues, old: rowValues, new: rowValues }),
      z.object({ kind: z.literal("delete"), key: rowValues, old: rowValues }),
    ]),
  ),
});

/**
 * What diff.json is checked against once its MAC holds (src/diff/store.ts). Its `createdAt` is optional: a diff's
 * creation time is kept beside it in created.json, not in its content.
 */
export const diffFileSchema: z.ZodType<Omit<Diff, "createdAt"> & { readonly createdAt?: string }> = z.object({
  formatVersion: z.literal(2),
  session: z.string(),
  snapshot: z.string(),
  createdAt: z.string().optional(),
  schemaChanges: z.array(schemaChangeRecordSchema),
  tables: z.array(tableChangesSchema),
  hazards: z.array(
    z.object({
      code: z.string(),
      severity: z.enum(["info", "warn", "danger"]),
      object: z.string(),
      message: z.string(),
      count: z.number().optional(),
      definition: z.string().optional(),
    }),
  ),
  verification: z.object({
    verified: z.boolean(),
    mismatches: z.array(z.object({ table: z.string(), keys: strings })),
    schemaDifference: strings,
    error: z.string().optional(),
  }),
  summary: z.object({ inserts: z.number(), updates: z.number(), deletes: z.number(), ddl: z.number() }),
});

/** The forward SQL of a diff: what runs before the data, and after it (server-wide changes left out of a replay). */
export function forwardSchema(diff: Pick<Diff, "schemaChanges">, options: { replay?: boolean } = {}): { before: string[]; after: string[] } {
  const changes = diff.schemaChanges.filter((c) => options.replay !== true || c.serverWide !== true);
  return { before: changes.flatMap((c) => [...c.sql]), after: changes.flatMap((c) => [...c.afterData]) };
}
