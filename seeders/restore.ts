/**
 * Restores a snapshot into an empty database on a staging server, in one
 * transaction and in pg_dump's order: pre-data schema, data (COPY FROM with
 * FREEZE, since the tables were created in the same transaction), sequence
 * values, then post-data (constraints, indexes, triggers). Every file's
 * sha256 is checked as it is read; a mismatch aborts the restore.
 */
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { from as copyFrom } from "pg-copy-streams";
import { AirlockError } from "../src/errors.ts";
import { type PgTarget, query, quoteIdent, quoteLiteral, withClient } from "../src/pg/connect.ts";
import { toAirlockError } from "../src/pg/pg-error.ts";
import { POST_DATA_MARKER } from "../src/snapshot/capture.ts";
import { applyDatabaseSettings, createPlaceholderRoles, refreshPopulatedMatviews } from "../src/catalog/restore.ts";
import { type SnapshotManifest, readSnapshotCatalog } from "../src/snapshot/store.ts";

/** Progress of a restore, by compressed bytes read. */
export interface RestoreProgress {
  readonly bytes: number;
  readonly totalBytes: number;
  readonly table?: string;
}

function corrupt(id: string, file: string): AirlockError {
  return new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", `snapshot ${id} is corrupt: ${file} does not match its checksum`, {
    hint: `check it with \`airlock snapshot verify ${id}\`, then remove it and capture a new one`,
  });
}

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

/**
 * The COPY that loads a table's data file. A table with nothing to copy (no columns, or only generated ones)
 * has an empty line per row: COPY without a column list takes its default list, which is empty then, and
 * loads each empty line as one row (an empty list in parentheses is a syntax error).
 */
function copyInSql(t: Pick<SnapshotManifest["tables"][number], "schema" | "name" | "columns">): string {
  const table = `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
  const cols = t.columns.length === 0 ? "" : ` (${t.columns.map((c) => quoteIdent(c.name)).join(", ")})`;
  return `COPY ${table}${cols} FROM STDIN WITH (FREEZE)`;
}

/** Restores the snapshot in `dir` (described by `manifest`) into the empty database `target`. */
export async function restoreSnapshot(options: { target: PgTarget; dir: string; manifest: SnapshotManifest; onProgress?: (p: RestoreProgress) => void }): Promise<{ rows: number; elapsedMs: number }> {
  const { manifest, dir } = options;
  const started = Date.now();
  const schemaText = readFileSync(join(dir, "schema.sql"));
  if (createHash("sha256").update(schemaText).digest("hex") !== manifest.files["schema.sql"]) throw corrupt(manifest.id, "schema.sql");
  const { pre, post } = schemaSections(schemaText.toString("utf8"));
  const catalog = readSnapshotCatalog(dir, manifest);
  const totalBytes = manifest.tables.reduce((n, t) => n + statSync(join(dir, t.file)).size, 0);
  let bytes = 0;
  let rows = 0;
  await withClient(options.target, { step: "restore" }, async (client) => {
    await query(client, "BEGIN");
    try {
      // Grants and policies name production's roles: they must exist before the schema does.
      await createPlaceholderRoles(client, manifest.catalog?.roles ?? []);
      await query(client, pre);
      for (const t of manifest.tables) {
        const expected = manifest.files[t.file];
        const hash = createHash("sha256");
        const counter = new Transform({
          transform(chunk: Buffer, _enc, done) {
            hash.update(chunk);
            bytes += chunk.length;
            options.onProgress?.({ bytes, totalBytes, table: `${t.schema}.${t.name}` });
            done(null, chunk);
          },
        });
        const sql = copyInSql(t);
        try {
          await pipeline(createReadStream(join(dir, t.file)), counter, createGunzip(), client.query(copyFrom(sql)));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "Z_DATA_ERROR" || (e as NodeJS.ErrnoException).code === "Z_BUF_ERROR") throw corrupt(manifest.id, t.file);
          throw toAirlockError(e, { sql });
        }
        if (hash.digest("hex") !== expected) throw corrupt(manifest.id, t.file);
        rows += t.rows;
      }
      for (const s of manifest.sequences) {
        const name = quoteLiteral(`${quoteIdent(s.schema)}.${quoteIdent(s.name)}`);
        await query(client, `SELECT pg_catalog.setval(${name}, ${s.lastValue}, ${s.isCalled})`);
      }
      await query(client, post);
      if (catalog !== null) {
        await refreshPopulatedMatviews(client, catalog);
        await applyDatabaseSettings(client, catalog);
      }
      await query(client, "COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    }
  });
  return { rows, elapsedMs: Date.now() - started };
}
