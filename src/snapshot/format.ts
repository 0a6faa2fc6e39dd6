/**
 * A snapshot directory's layout, as the capture writes it and both restores
 * read it (src/snapshot/restore.ts on the local cluster, infra/ in a
 * container): its file names, and the marker that splits schema.sql into
 * pg_dump's pre-data and post-data sections. It imports nothing but the
 * error type, so the Pulumi program reads it without loading the capture.
 */
import { AirlockError } from "../errors.ts";

/** The manifest: tables, sequences, rules and each file's sha256. */
export const MANIFEST_FILE = "manifest.json";
/** pg_dump's schema: pre-data, the marker, post-data. */
export const SCHEMA_FILE = "schema.sql";
/** The catalog model of production's schema at capture. */
export const CATALOG_FILE = "catalog.json";

/** Marks where pg_dump's post-data section (constraints, indexes, triggers) starts in schema.sql. */
export const POST_DATA_MARKER = "-- airlock:post-data";

/** Splits pg_dump's schema.sql into runnable SQL, dropping psql's \restrict guard lines (nothing else may be a meta-command). */
export function schemaSections(schemaSql: string): { pre: string; post: string } {
  const at = schemaSql.indexOf(POST_DATA_MARKER);
  if (at < 0) throw new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", "schema.sql has no post-data marker", { hint: "capture the snapshot again" });
  const clean = (sql: string) =>
    sql
      .split("\n")
      .filter((line) => {
        if (!line.startsWith("\\")) return true;
        if (/^\\(un)?restrict\b/.test(line)) return false;
        throw new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", "schema.sql holds an unexpected psql meta-command", { hint: "capture the snapshot again" });
      })
      .join("\n");
  return { pre: clean(schemaSql.slice(0, at)), post: clean(schemaSql.slice(at + POST_DATA_MARKER.length)) };
}
