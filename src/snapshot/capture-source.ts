/**
 * Capture's side of production: the one read-only REPEATABLE READ
 * transaction whose exported snapshot every read shares, and pg_dump run on
 * that snapshot for the schema (twice, one after the other, so production
 * never sees more than two Airlock connections).
 */
import { execFile } from "node:child_process";
import type pg from "pg";
import { AirlockError } from "../errors.ts";
import type { PgBinaries } from "../pg/binaries.ts";
import { type PgTarget, openClient, query } from "../pg/connect.ts";
import { redactText } from "../pg/redact.ts";
import { POST_DATA_MARKER } from "./format.ts";

/** The read-only transaction on production, with what capture learns from it. */
export interface OpenCapture {
  readonly client: pg.Client;
  readonly snapshotName: string;
  readonly serverVersion: string;
  readonly serverMajor: number;
  readonly systemIdentifier: string | null;
}

/** Opens the capture's connection and its read-only REPEATABLE READ transaction, exporting its snapshot for pg_dump. */
export async function openCaptureTransaction(options: {
  readonly source: PgTarget;
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
}): Promise<OpenCapture> {
  const client = await openClient(options.source, {
    step: "capture",
    readOnly: true,
    statementTimeoutMs: options.statementTimeoutMs,
    lockTimeoutMs: options.lockTimeoutMs,
  });
  try {
    await query(client, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const info = await query<{ snapshot: string; version: string; num: string; sysid: string | null }>(
      client,
      `SELECT pg_export_snapshot() AS snapshot, current_setting('server_version') AS version, current_setting('server_version_num') AS num,
              CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') THEN (SELECT system_identifier::text FROM pg_control_system()) END AS sysid`,
    );
    const row = info.rows[0]!;
    return { client, snapshotName: row.snapshot, serverVersion: row.version, serverMajor: Math.floor(Number(row.num) / 10000), systemIdentifier: row.sysid };
  } catch (e) {
    await client.end().catch(() => undefined);
    throw e;
  }
}

function pgDumpEnv(source: PgTarget): NodeJS.ProcessEnv {
  // The password goes through the environment, never the command line (visible in ps).
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    PGHOST: source.host,
    PGPORT: String(source.port),
    PGUSER: source.user,
    PGDATABASE: source.database,
    PGAPPNAME: "airlock/capture-schema",
    PGTZ: "UTC",
    PGCONNECT_TIMEOUT: "10",
  };
  if (source.password !== undefined) env.PGPASSWORD = source.password;
  for (const [k, v] of Object.entries({ sslmode: "PGSSLMODE", sslrootcert: "PGSSLROOTCERT", sslcert: "PGSSLCERT", sslkey: "PGSSLKEY" })) {
    const value = source.params[k];
    if (value !== undefined) env[v] = value;
  }
  return env;
}

function runPgDump(binaries: PgBinaries, source: PgTarget, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binaries.tool("pg_dump"), [...args], { env: pgDumpEnv(source), maxBuffer: 512 * 1024 * 1024, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error === null) return resolve(stdout);
      const secrets = source.password === undefined ? [] : [source.password];
      reject(
        new AirlockError("AIRLOCK_PG_DUMP_FAILED", `pg_dump failed: ${redactText(stderr.trim() || error.message, secrets)}`, {
          hint: "check that the capture role may read every table's definition",
          cause: error,
        }),
      );
    });
  });
}

/** Dumps the schema at the exported snapshot: pre-data, the marker, post-data. */
export async function dumpSchema(binaries: PgBinaries, source: PgTarget, snapshotName: string): Promise<string> {
  // Privileges and comments are part of the schema (their roles are recreated in staging as placeholders);
  // owners are not (staging objects belong to the staging roles, mapped to production's owners when compared).
  const common = ["--schema-only", "--no-owner", "--no-publications", "--no-subscriptions", `--snapshot=${snapshotName}`, "--exclude-schema=airlock"];
  // One after the other: never a third connection to production.
  const pre = await runPgDump(binaries, source, [...common, "--section=pre-data"]);
  const post = await runPgDump(binaries, source, [...common, "--section=post-data"]);
  // psql's \restrict guard lines carry a random key per run; dropping them keeps schema.sql deterministic.
  const unguarded = (sql: string) => sql.replace(/^\\(un)?restrict \S+\n/gm, "");
  return `${unguarded(pre)}\n${POST_DATA_MARKER}\n${unguarded(post)}`;
}
