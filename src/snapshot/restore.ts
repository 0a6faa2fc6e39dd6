/**
 * Restores a snapshot into an empty database on a staging server, in one
 * transaction and in pg_dump's order: production's roles as placeholders,
 * pre-data schema, data (COPY FROM with FREEZE, since the tables were
 * created in the same transaction), sequence values, post-data
 * (constraints, indexes, triggers), then the materialized views production
 * had populated and the database's own settings. Every file's sha256 is
 * checked as it is read; a mismatch aborts the restore. The steps come from
 * restoreSteps (restore-sql.ts), which the staging container's psql script
 * is written from too (src/staging/container-restore.ts).
 */
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { from as copyFrom } from "pg-copy-streams";
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import { type PgTarget, query, withClient } from "../pg/connect.ts";
import { toAirlockError } from "../pg/pg-error.ts";
import { SCHEMA_FILE, schemaSections } from "./format.ts";
import { type RestoreSection, copyInSql, restoreSteps } from "./restore-sql.ts";
import { type ManifestTable, type SnapshotManifest, readSnapshotCatalog } from "./store.ts";

/** Progress of a restore, by compressed bytes read, and the part of it that runs (schema, data, constraints and indexes, …). */
export interface RestoreProgress {
  readonly bytes: number;
  readonly totalBytes: number;
  readonly section: RestoreSection;
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
  const steps = restoreSteps({ manifest, schema: schemaSections(schemaText.toString("utf8")), catalog: readSnapshotCatalog(dir, manifest) });
  const totalBytes = manifest.tables.reduce((n, t) => n + statSync(join(dir, t.file)).size, 0);
  let bytes = 0;
  let rows = 0;
  const loadTable = async (client: pg.Client, t: ManifestTable): Promise<void> => {
    const expected = manifest.files[t.file];
    const hash = createHash("sha256");
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        bytes += chunk.length;
        options.onProgress?.({ bytes, totalBytes, section: "data", table: `${t.schema}.${t.name}` });
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
  };
  await withClient(options.target, { step: "restore" }, async (client) => {
    await query(client, "BEGIN");
    try {
      let section: RestoreSection | undefined;
      for (const step of steps) {
        if (step.section !== section) options.onProgress?.({ bytes, totalBytes, section: (section = step.section) });
        if (step.kind === "copy") await loadTable(client, step.table);
        else await query(client, step.sql);
      }
      await query(client, "COMMIT");
    } catch (e) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw e;
    }
  });
  return { rows, elapsedMs: Date.now() - started };
}
