/**
 * Restores a snapshot into an empty database on a staging server, in one
 * transaction and in pg_dump's order: pre-data schema, data (COPY FROM with
 * FREEZE, since the tables were created in the same transaction), sequence
 * values, then post-data (constraints, indexes, triggers). Every file's
 * sha256 is checked as it is read; a mismatch aborts the restore. The
 * staging container restores the same way from a psql script built with the
 * same statements (src/staging/container-restore.ts, src/snapshot/restore-sql.ts).
 */
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { from as copyFrom } from "pg-copy-streams";
import { applyDatabaseSettings, createPlaceholderRoles, refreshPopulatedMatviews } from "../catalog/restore.ts";
import { AirlockError } from "../errors.ts";
import { type PgTarget, query, withClient } from "../pg/connect.ts";
import { toAirlockError } from "../pg/pg-error.ts";
import { SCHEMA_FILE, schemaSections } from "./format.ts";
import { copyInSql, setvalSql } from "./restore-sql.ts";
import { type SnapshotManifest, readSnapshotCatalog } from "./store.ts";

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

/** Restores the snapshot in `dir` (described by `manifest`) into the empty database `target`. */
export async function restoreSnapshot(options: {
  target: PgTarget;
  dir: string;
  manifest: SnapshotManifest;
  onProgress?: (p: RestoreProgress) => void;
}): Promise<{ rows: number; elapsedMs: number }> {
  const { manifest, dir } = options;
  const started = Date.now();
  const schemaText = readFileSync(join(dir, SCHEMA_FILE));
  if (createHash("sha256").update(schemaText).digest("hex") !== manifest.files[SCHEMA_FILE]) throw corrupt(manifest.id, SCHEMA_FILE);
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
        const sql = copyInSql(t, "stdin");
        try {
          await pipeline(createReadStream(join(dir, t.file)), counter, createGunzip(), client.query(copyFrom(sql)));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "Z_DATA_ERROR" || (e as NodeJS.ErrnoException).code === "Z_BUF_ERROR") throw corrupt(manifest.id, t.file);
          throw toAirlockError(e, { sql });
        }
        if (hash.digest("hex") !== expected) throw corrupt(manifest.id, t.file);
        rows += t.rows;
      }
      for (const s of manifest.sequences) await query(client, setvalSql(s));
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
