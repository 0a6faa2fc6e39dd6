/**
 * Capture: the only way production data reaches staging. One read-only
 * REPEATABLE READ transaction exports its snapshot to pg_dump (schema) and
 * streams every table out with COPY through the masking rules into
 * compressed files, so schema and data are one instant. At most two
 * connections to production exist at any moment: this one and pg_dump.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, renameSync, rmSync } from "node:fs";
import { claimForThisProcess } from "../config/claims.ts";
import { privateDir, writePrivate } from "../config/private-files.ts";
import { dirname, join } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import type pg from "pg";
import { to as copyTo } from "pg-copy-streams";
import type { Problem } from "../config/schema.ts";
import { AirlockError } from "../errors.ts";
import { type PgBinaries, findPgBinaries } from "../pg/binaries.ts";
import { type PgTarget, openClient, query, quoteIdent } from "../pg/connect.ts";
import { CopyLineSplitter } from "../pg/copy-lines.ts";
import { copyText, copyValue } from "../pg/copy-text.ts";
import { toAirlockError } from "../pg/pg-error.ts";
import { redactText } from "../pg/redact.ts";
import { ownRows } from "../promote/rows.ts";
import { readCatalog } from "../catalog/read.ts";
import { namedRoles, objectOwners } from "../catalog/roles.ts";
import { readSequences, readTables } from "./catalog.ts";
import { KeyedHmac } from "./keyed-hmac.ts";
import { checkCapturePrivileges } from "./privileges.ts";
import { AllowanceCheck, allowanceProblems } from "./allowances.ts";
import { type ProposedAllowances, proposeAllowances } from "./coincidences.ts";
import { LeakScanner } from "./leak-scan.ts";
import { Masker } from "./mask.ts";
import { type PiiSuspicion, detectPii } from "./pii.ts";
import { type PlannedTable, planMasking } from "./plan.ts";
import { type LeakAllowance, type MaskRule, describeRule } from "./rules.ts";
import { scanSnapshotForLeaks } from "./scan-snapshot.ts";
import { CAPTURE_CLAIM, type ManifestTable, type SnapshotManifest, captureTempDir, newSnapshotId, removeStaleCaptures, sha256File } from "./store.ts";

/** Marks where pg_dump's post-data section (constraints, indexes, triggers) starts in schema.sql. */
export const POST_DATA_MARKER = "-- airlock:post-data";

/** Progress events for a terminal. */
export type CaptureProgress =
  | { readonly phase: "schema" | "leak-scan" | "checksums" }
  | { readonly phase: "table"; readonly table: string; readonly rows: number; readonly done: boolean; readonly index: number; readonly of: number };

/** Everything capture needs. */
export interface CaptureOptions {
  readonly source: PgTarget;
  /** AIRLOCK_SECRET: keys masking and row fingerprints. */
  readonly secret: string | undefined;
  readonly rules: Readonly<Record<string, MaskRule>>;
  /** masking.allow: values of kept columns the leak scan lets through with a reason (keyed hashes). */
  readonly allow?: Readonly<Record<string, LeakAllowance>>;
  /** Where snapshots live (`.airlock/snapshots`). */
  readonly snapshotsDir: string;
  readonly binaries?: PgBinaries;
  readonly statementTimeoutMs: number;
  readonly lockTimeoutMs: number;
  readonly sampleSize: number;
  readonly onProgress?: (e: CaptureProgress) => void;
}

/** Canonical text of the rules for the manifest's rules hash. */
export function rulesHash(rules: Readonly<Record<string, MaskRule>>): string {
  const text = Object.keys(rules)
    .sort()
    .map((k) => `${k}=${describeRule(rules[k]!)}`)
    .join("\n");
  return createHash("sha256").update(text).digest("hex");
}

function requireSecret(secret: string | undefined): string {
  if (secret === undefined || secret.length < 16) {
    throw new AirlockError("AIRLOCK_SECRET_WEAK", "AIRLOCK_SECRET is missing or shorter than 16 characters", {
      hint: "set AIRLOCK_SECRET in .env to a long random string (e.g. `openssl rand -base64 32`) and keep it stable: it decides every masked value",
    });
  }
  return secret;
}

function listProblems(code: string, title: string, problems: readonly Problem[], hint: string): AirlockError {
  const list = problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n");
  return new AirlockError(code, `${title}:\n${list}`, { hint, details: { problems } });
}

/** The read-only transaction on production, with what capture learns from it. */
interface OpenCapture {
  readonly client: pg.Client;
  readonly snapshotName: string;
  readonly serverVersion: string;
  readonly serverMajor: number;
  readonly systemIdentifier: string | null;
}

async function openCaptureTransaction(options: CaptureOptions): Promise<OpenCapture> {
  const client = await openClient(options.source, { step: "capture", readOnly: true, statementTimeoutMs: options.statementTimeoutMs, lockTimeoutMs: options.lockTimeoutMs });
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
      reject(new AirlockError("AIRLOCK_PG_DUMP_FAILED", `pg_dump failed: ${redactText(stderr.trim() || error.message, secrets)}`, { hint: "check that the capture role may read every table's definition", cause: error }));
    });
  });
}

/** Dumps the schema at the exported snapshot: pre-data, the marker, post-data. */
async function dumpSchema(binaries: PgBinaries, source: PgTarget, snapshotName: string): Promise<string> {
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

/** Streams COPY text lines, masks them, and writes row fingerprints beside. */
class MaskingTransform extends Transform {
  private readonly lines = new CopyLineSplitter();
  // One write per input chunk: each write to a zlib stream is a thread-pool round trip.
  private pendingFingerprints = "";
  rows = 0;

  constructor(
    private readonly plan: PlannedTable,
    private readonly masker: Masker,
    private readonly rowHmac: KeyedHmac,
    private readonly leaks: LeakScanner,
    private readonly fingerprints: NodeJS.WritableStream | null,
    private readonly onRows: (rows: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    try {
      let out = "";
      for (const line of this.lines.push(chunk)) out += this.maskLine(line);
      if (out !== "") this.push(out);
      this.flushFingerprints();
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    try {
      let out = "";
      for (const line of this.lines.end()) out += this.maskLine(line);
      if (out !== "") this.push(out);
      this.flushFingerprints();
      this.fingerprints?.end();
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  private flushFingerprints(): void {
    if (this.pendingFingerprints === "" || this.fingerprints === null) return;
    this.fingerprints.write(this.pendingFingerprints);
    this.pendingFingerprints = "";
  }

  private maskLine(line: string): string {
    const plan = this.plan;
    const fields = plan.masked.length === 0 && plan.keyIndexes === null ? null : line.split("\t");
    if (fields !== null) {
      for (const i of plan.masked) {
        const original = copyValue(fields[i]!);
        const masked = this.masker.mask(plan.rules[i]!, plan.columns[i]!, original);
        const rule = plan.rules[i]!;
        // Date shifts keep values that look like any other date: not scanned.
        if (rule.kind !== "dateShift") {
          this.leaks.addOriginal(original);
          this.leaks.addProduced(masked);
        }
        fields[i] = copyText(masked);
      }
      if (plan.keyIndexes !== null && this.fingerprints !== null) {
        // Fingerprint of the original row, filed under its (masked) key: the snapshot holds no real value.
        const digest = this.rowHmac.digest(`${plan.table.schema}.${plan.table.name}\u0000${line}`).toString("base64url");
        this.pendingFingerprints += `${plan.keyIndexes.map((k) => fields[k]).join("\t")}\t${digest}\n`;
      }
    }
    this.rows++;
    if (this.rows % 50_000 === 0) this.onRows(this.rows);
    return `${fields === null ? line : fields.join("\t")}\n`;
  }
}

async function copyTable(
  client: pg.Client,
  plan: PlannedTable,
  dir: string,
  masker: Masker,
  rowHmac: KeyedHmac,
  leaks: LeakScanner,
  onRows: (rows: number) => void,
): Promise<ManifestTable> {
  const base = `${plan.table.schema}.${plan.table.name}`;
  const file = `data/${base}.copy.gz`;
  const hmacFile = plan.keyIndexes === null ? null : `hmac/${base}.tsv.gz`;
  const cols = plan.columns.map((c) => quoteIdent(c.column)).join(", ");
  // ONLY: a table inheriting from this one is captured as itself (captured tables are plain, partitions as their leaves).
  const sql = `COPY (SELECT ${cols} FROM ${ownRows(plan.table.schema, plan.table.name, false)}) TO STDOUT`;
  const fingerprintGzip = hmacFile === null ? null : createGzip({ level: 1 });
  const fingerprintDone = hmacFile === null || fingerprintGzip === null ? Promise.resolve() : pipeline(fingerprintGzip, createWriteStream(join(dir, hmacFile), { mode: 0o600 }));
  const transform = new MaskingTransform(plan, masker, rowHmac, leaks, fingerprintGzip, onRows);
  try {
    await Promise.all([pipeline(client.query(copyTo(sql)), transform, createGzip({ level: 1 }), createWriteStream(join(dir, file), { mode: 0o600 })), fingerprintDone]);
  } catch (e) {
    fingerprintGzip?.destroy();
    throw e instanceof AirlockError ? e : (e as NodeJS.ErrnoException).code?.startsWith("E") === true && (e as NodeJS.ErrnoException).syscall !== undefined ? writeError(dir, e) : toAirlockError(e, { sql });
  }
  return {
    schema: plan.table.schema,
    name: plan.table.name,
    columns: plan.columns.map((c, i) => ({ name: c.column, type: c.type, rule: describeRule(plan.rules[i]!).replace(/^custom\(([^)]*)\):.*$/s, "custom($1)") })),
    key: plan.table.key,
    rows: transform.rows,
    file,
    hmacFile,
  };
}

function writeError(dir: string, e: unknown): AirlockError {
  const err = e as NodeJS.ErrnoException;
  return new AirlockError("AIRLOCK_SNAPSHOT_WRITE_FAILED", `cannot write the snapshot under ${dir}: ${err.code ?? ""} ${err.message}`.trim(), {
    hint: err.code === "ENOSPC" ? "free disk space or move the state directory (stateDir in airlock.config.ts)" : "check that the state directory is writable",
    cause: e,
  });
}

/** Samples production and returns the suspected-PII columns that have no rule (for `--init-rules` and the capture's check). */
export async function suggestRules(options: Pick<CaptureOptions, "source" | "rules" | "statementTimeoutMs" | "lockTimeoutMs" | "sampleSize">): Promise<PiiSuspicion[]> {
  const capture = await openCaptureTransaction({ ...options, secret: undefined, snapshotsDir: "" });
  try {
    await checkCapturePrivileges(capture.client, { sequences: false });
    const tables = await readTables(capture.client);
    return await unruledPii(capture.client, tables, options.rules, options.sampleSize);
  } finally {
    await capture.client.query("ROLLBACK").catch(() => undefined);
    await capture.client.end().catch(() => undefined);
  }
}

/** What `airlock snapshot --init-rules` proposes: rules for unruled personal data, and the leak scan's coincidences under them. */
export interface InitRulesProposal {
  readonly suspicions: readonly PiiSuspicion[];
  readonly allowances: ProposedAllowances;
}

/**
 * `--init-rules`: samples production for unruled personal data, then runs
 * the leak scan against production under the configured rules plus those
 * suggestions, so that what it proposes passes the scan on this database:
 * kept columns holding copies of identifying originals get a rule, and
 * common words equal by chance get an allowance to review. One read-only
 * transaction; reads every masked and kept text column once per round.
 */
export async function initRules(
  options: Pick<CaptureOptions, "source" | "rules" | "allow" | "secret" | "statementTimeoutMs" | "lockTimeoutMs" | "sampleSize">,
): Promise<InitRulesProposal> {
  const capture = await openCaptureTransaction({ ...options, secret: undefined, snapshotsDir: "" });
  try {
    await checkCapturePrivileges(capture.client, { sequences: false });
    const tables = await readTables(capture.client);
    const suspicions = await unruledPii(capture.client, tables, options.rules, options.sampleSize);
    const proposed = { ...options.rules, ...Object.fromEntries(suspicions.map((s) => [`${s.column.schema}.${s.column.table}.${s.column.column}`, s.suggested])) };
    const allowances = await proposeAllowances(capture.client, tables, proposed, options.allow ?? {}, options.secret);
    return { suspicions, allowances };
  } finally {
    await capture.client.query("ROLLBACK").catch(() => undefined);
    await capture.client.end().catch(() => undefined);
  }
}

async function unruledPii(client: pg.ClientBase, tables: Awaited<ReturnType<typeof readTables>>, rules: Readonly<Record<string, MaskRule>>, sampleSize: number): Promise<PiiSuspicion[]> {
  const { plans } = planMasking(tables, rules);
  const inherited = new Set(plans.flatMap((p) => p.columns.filter((_, i) => p.rules[i]!.kind !== "keep" || p.ruled[i]).map((c) => `${c.schema}.${c.table}.${c.column}`)));
  const columns = tables.flatMap((t) => t.columns.filter((c) => !c.generated && !inherited.has(`${t.schema}.${t.name}.${c.name}`)).map((c) => ({ schema: t.schema, table: t.name, column: c.name, type: c.type })));
  return detectPii(client, columns, { sampleSize });
}

async function checkConstants(client: pg.ClientBase, plans: readonly PlannedTable[]): Promise<Problem[]> {
  const problems: Problem[] = [];
  for (const p of plans) {
    for (const [i, rule] of p.rules.entries()) {
      if (rule.kind !== "constant" || rule.value === null) continue;
      const c = p.columns[i]!;
      await client.query("SAVEPOINT airlock_cast");
      try {
        await client.query(`SELECT $1::${c.type}`, [rule.value]);
        await client.query("RELEASE SAVEPOINT airlock_cast");
      } catch (e) {
        await client.query("ROLLBACK TO SAVEPOINT airlock_cast");
        problems.push({ path: `masking.rules.${c.schema}.${c.table}.${c.column}`, message: `the constant is not a valid ${c.type}: ${(e as Error).message}` });
      }
    }
  }
  return problems;
}

/**
 * Captures a masked snapshot of production. Nothing is left behind on
 * failure: the snapshot is written to a temporary directory and only
 * renamed into place once it is complete, checksummed and leak-free; a
 * capture killed outright leaves that directory with its claim, and the
 * next capture removes it.
 */
export async function captureSnapshot(options: CaptureOptions): Promise<SnapshotManifest> {
  const started = Date.now();
  const secret = requireSecret(options.secret);
  const binaries = options.binaries ?? findPgBinaries();
  // What an interrupted capture left behind goes first.
  removeStaleCaptures(options.snapshotsDir);
  const capture = await openCaptureTransaction(options);
  const { client } = capture;
  const id = newSnapshotId();
  const tmp = captureTempDir(options.snapshotsDir, id);
  let complete = false;
  try {
    if (capture.serverMajor > binaries.major) {
      throw new AirlockError("AIRLOCK_PG_DUMP_TOO_OLD", `production runs Postgres ${capture.serverVersion}, but the local pg_dump is ${binaries.version}; pg_dump cannot dump a newer server`, {
        hint: `install the Postgres ${capture.serverMajor} client tools and point AIRLOCK_PG_BIN at them`,
      });
    }
    // Before anything is read or written: a role that cannot read every table and sequence is refused.
    await checkCapturePrivileges(client, { sequences: true });
    const tables = await readTables(client);
    const { plans, problems } = planMasking(tables, options.rules);
    problems.push(...allowanceProblems(options.allow ?? {}, plans));
    problems.push(...(await checkConstants(client, plans)));
    if (problems.length > 0) {
      throw listProblems("AIRLOCK_RULES_INVALID", `the masking rules do not fit production (${problems.length} problem${problems.length === 1 ? "" : "s"})`, problems, "fix masking.rules in airlock.config.ts; nothing was captured");
    }
    const pii = await unruledPii(client, tables, options.rules, options.sampleSize);
    if (pii.length > 0) {
      const list = pii.map((s) => `  - ${s.column.schema}.${s.column.table}.${s.column.column} — ${s.reasons.join("; ")} — suggested: ${describeRule(s.suggested)}`).join("\n");
      throw new AirlockError("AIRLOCK_PII_UNRULED", `${pii.length} column${pii.length === 1 ? " looks" : "s look"} like personal data but ha${pii.length === 1 ? "s" : "ve"} no masking rule:\n${list}`, {
        hint: "add a rule for each in masking.rules (\"keep\" marks a column as reviewed); `airlock snapshot --init-rules` prints a starting block",
        details: { columns: pii.map((s) => ({ column: `${s.column.schema}.${s.column.table}.${s.column.column}`, reasons: s.reasons, suggested: describeRule(s.suggested) })) },
      });
    }
    const sequences = await readSequences(client);
    // Production's whole catalog, at the same instant as the data: restores are checked against it.
    const owners = await objectOwners(client);
    const catalog = await readCatalog(client, { owners: new Set(owners) });

    try {
      // Masked data and row fingerprints are private to the user (0700/0600), like all of .airlock/. The claim
      // first: a capture killed from here on leaves a directory the next run can tell is abandoned.
      privateDir(tmp, dirname(options.snapshotsDir));
      writePrivate(join(tmp, CAPTURE_CLAIM), `${JSON.stringify(claimForThisProcess())}\n`);
      privateDir(join(tmp, "data"), dirname(options.snapshotsDir));
      privateDir(join(tmp, "hmac"), dirname(options.snapshotsDir));
    } catch (e) {
      throw writeError(options.snapshotsDir, e);
    }
    options.onProgress?.({ phase: "schema" });
    const schemaSql = await dumpSchema(binaries, options.source, capture.snapshotName);
    try {
      writePrivate(join(tmp, "schema.sql"), schemaSql);
      writePrivate(join(tmp, "catalog.json"), `${JSON.stringify(catalog)}\n`);
    } catch (e) {
      throw writeError(tmp, e);
    }

    const masker = new Masker(secret);
    const rowHmac = new KeyedHmac(secret);
    const leaks = new LeakScanner();
    // Tables with unique masked columns first, so that other columns of their domain follow any re-draws.
    const ordered = [...plans].sort((a, b) => Number(b.masked.some((i) => b.columns[i]!.unique)) - Number(a.masked.some((i) => a.columns[i]!.unique)));
    const manifestTables: ManifestTable[] = [];
    for (const [index, plan] of ordered.entries()) {
      const name = `${plan.table.schema}.${plan.table.name}`;
      const report = (rows: number, done: boolean) => options.onProgress?.({ phase: "table", table: name, rows, done, index: index + 1, of: ordered.length });
      report(0, false);
      const t = await copyTable(client, plan, tmp, masker, rowHmac, leaks, (rows) => report(rows, false));
      report(t.rows, true);
      manifestTables.push(t);
    }
    // Production is no longer needed: end the transaction before the local work.
    await client.query("COMMIT");
    await client.end();

    options.onProgress?.({ phase: "leak-scan" });
    const scanStarted = Date.now();
    const { allowed } = await scanSnapshotForLeaks(tmp, manifestTables, `${schemaSql}\n${JSON.stringify(catalog)}`, leaks, new AllowanceCheck(options.allow ?? {}, secret));
    const leakScan = { ok: true as const, originalsChecked: leaks.originalsCount, fieldsScanned: leaks.fieldsScanned, elapsedMs: Date.now() - scanStarted, allowed };

    options.onProgress?.({ phase: "checksums" });
    manifestTables.sort((a, b) => `${a.schema}.${a.name}`.localeCompare(`${b.schema}.${b.name}`));
    const files: Record<string, string> = { "schema.sql": await sha256File(join(tmp, "schema.sql")), "catalog.json": await sha256File(join(tmp, "catalog.json")) };
    for (const t of manifestTables) {
      files[t.file] = await sha256File(join(tmp, t.file));
      if (t.hmacFile !== null) files[t.hmacFile] = await sha256File(join(tmp, t.hmacFile));
    }
    const manifest: SnapshotManifest = {
      formatVersion: 1,
      id,
      createdAt: new Date(started).toISOString(),
      source: {
        serverVersion: capture.serverVersion,
        systemIdentifier: capture.systemIdentifier,
        database: options.source.database,
        host: options.source.host,
        port: options.source.port,
        user: options.source.user,
      },
      pgDumpVersion: binaries.version,
      rulesHash: rulesHash(options.rules),
      secretFingerprint: new KeyedHmac(secret).digest("airlock/secret-fingerprint").toString("hex").slice(0, 16),
      tables: manifestTables,
      sequences,
      files,
      catalog: { file: "catalog.json", owners, roles: namedRoles(catalog, owners) },
      leakScan,
      elapsedMs: Date.now() - started,
    };
    try {
      writePrivate(join(tmp, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
      rmSync(join(tmp, CAPTURE_CLAIM));
      renameSync(tmp, join(options.snapshotsDir, id));
    } catch (e) {
      throw writeError(tmp, e);
    }
    complete = true;
    return manifest;
  } finally {
    if (!complete) rmSync(tmp, { recursive: true, force: true });
    await client.end().catch(() => undefined);
  }
}
