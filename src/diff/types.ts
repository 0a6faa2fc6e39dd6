/**
 * The promotion diff as data: what the agent changed between a session's
 * base and work, as a readonly discriminated structure with a canonical JSON
 * form whose sha256 is the diff's id.
 */

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
}

/** What replay verification found. */
export interface Verification {
  readonly verified: boolean;
  /** Tables whose replayed rows differ from work, with a few differing keys. */
  readonly mismatches: ReadonlyArray<{ readonly table: string; readonly keys: readonly string[] }>;
  /** Schema left different after replay (DDL), empty when none. */
  readonly schemaDifference: readonly string[];
  /** Why replay could not run to the end, if it failed. */
  readonly error?: string;
}

/** The whole diff. Its canonical JSON's sha256 is its id. */
export interface Diff {
  readonly formatVersion: 1;
  readonly session: string;
  readonly snapshot: string;
  readonly createdAt: string;
  /** DDL turning base's schema into work's, in dependency order, applied before the data changes. */
  readonly schema: readonly string[];
  /** DDL applied after the data changes (NOT NULL on columns the data fills). */
  readonly schemaAfterData: readonly string[];
  /** DDL turning work's schema back into base's: what rollback runs to undo the schema changes. */
  readonly reverseSchema: readonly string[];
  readonly tables: readonly TableChanges[];
  readonly hazards: readonly Hazard[];
  readonly verification: Verification;
  readonly summary: { readonly inserts: number; readonly updates: number; readonly deletes: number; readonly ddl: number };
}
