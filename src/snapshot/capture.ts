/**
 * Capture: the only way production data reaches staging. One read-only
 * REPEATABLE READ transaction exports its snapshot to pg_dump (schema) and
 * streams every table out with COPY through the masking rules into
 * compressed files, so schema and data are one instant. At most two
 * connections to production exist at any moment: this one and pg_dump.
 *
 * This file checks the rules against production and assembles the snapshot;
 * the transaction and pg_dump are in capture-source.ts, the masking stream
 * in capture-stream.ts.
 */
import { createHash } from "node:crypto";
import { renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import type pg from "pg";
import { claimForThisProcess } from "../config/claims.ts";
import { type LeakAllowance, type MaskRule, describeRule } from "../config/masking-rules.ts";
import { privateDir, writePrivate } from "../config/private-files.ts";
import type { Problem } from "../config/schema.ts";
import { AirlockError, type ErrorCode } from "../errors.ts";
import { type PgBinaries, findPgBinaries } from "../pg/binaries.ts";
import type { PgTarget } from "../pg/connect.ts";
import { readCatalog } from "../catalog/read.ts";
import { namedRoles, objectOwners } from "../catalog/roles.ts";
import { AllowanceCheck, allowanceProblems } from "./allowances.ts";
import { dumpSchema, openCaptureTransaction } from "./capture-source.ts";
import { copyTable, writeError } from "./capture-stream.ts";
import { readSequences, readTables } from "./catalog.ts";
import { type ProposedAllowances, proposeAllowances } from "./coincidences.ts";
import { CATALOG_FILE, MANIFEST_FILE, SCHEMA_FILE } from "./format.ts";
import { KeyedHmac } from "./keyed-hmac.ts";
import { LeakScanner } from "./leak-scan.ts";
import { Masker } from "./mask.ts";
import { type PiiSuspicion, detectPii } from "./pii.ts";
import { type PlannedTable, planMasking } from "./plan.ts";
import { checkCapturePrivileges } from "./privileges.ts";
import { scanSnapshotForLeaks } from "./scan-snapshot.ts";
import { CAPTURE_CLAIM, type ManifestTable, type SnapshotManifest, captureTempDir, newSnapshotId, removeStaleCaptures, sha256File } from "./store.ts";
import { plural } from "../format/plural.ts";

/**
 * The phases of a capture, each told as it starts: `plan` (privileges, masking rules, unruled personal data),
 * `schema` (pg_dump), `table` (per table, and as its rows stream), `leak-scan`, `checksums`.
 */
export type CaptureProgress =
  | { readonly phase: "plan" | "schema" | "leak-scan" | "checksums" }
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

function listProblems(code: ErrorCode, title: string, problems: readonly Problem[], hint: string): AirlockError {
  const list = problems.map((p) => `  - ${p.path}: ${p.message}`).join("\n");
  return new AirlockError(code, `${title}:\n${list}`, { hint, details: { problems } });
}

/** Samples production and returns the suspected-PII columns that have no rule (for `--init-rules` and the capture's check). */
export async function suggestRules(
  options: Pick<CaptureOptions, "source" | "rules" | "statementTimeoutMs" | "lockTimeoutMs" | "sampleSize">,
): Promise<PiiSuspicion[]> {
  const capture = await openCaptureTransaction(options);
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
  const capture = await openCaptureTransaction(options);
  try {
    await checkCapturePrivileges(capture.client, { sequences: false });
    const tables = await readTables(capture.client);
    const suspicions = await unruledPii(capture.client, tables, options.rules, options.sampleSize);
    const proposed = {
      ...options.rules,
      ...Object.fromEntries(suspicions.map((s) => [`${s.column.schema}.${s.column.table}.${s.column.column}`, s.suggested])),
    };
    const allowances = await proposeAllowances(capture.client, tables, proposed, options.allow ?? {}, options.secret);
    return { suspicions, allowances };
  } finally {
    await capture.client.query("ROLLBACK").catch(() => undefined);
    await capture.client.end().catch(() => undefined);
  }
}

async function unruledPii(
  client: pg.ClientBase,
  tables: Awaited<ReturnType<typeof readTables>>,
  rules: Readonly<Record<string, MaskRule>>,
  sampleSize: number,
): Promise<PiiSuspicion[]> {
  const { plans } = planMasking(tables, rules);
  const inherited = new Set(
    plans.flatMap((p) => p.columns.filter((_, i) => p.rules[i]!.kind !== "keep" || p.ruled[i]).map((c) => `${c.schema}.${c.table}.${c.column}`)),
  );
  const columns = tables.flatMap((t) =>
    t.columns
      .filter((c) => !c.generated && !inherited.has(`${t.schema}.${t.name}.${c.name}`))
      .map((c) => ({ schema: t.schema, table: t.name, column: c.name, type: c.type })),
  );
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
      throw new AirlockError(
        "AIRLOCK_PG_DUMP_TOO_OLD",
        `production runs Postgres ${capture.serverVersion}, but the local pg_dump is ${binaries.version}; pg_dump cannot dump a newer server`,
        {
          hint: `install the Postgres ${capture.serverMajor} client tools and point AIRLOCK_PG_BIN at them`,
        },
      );
    }
    // Before anything is read or written: a role that cannot read every table and sequence is refused.
    options.onProgress?.({ phase: "plan" });
    await checkCapturePrivileges(client, { sequences: true });
    const tables = await readTables(client);
    const { plans, problems } = planMasking(tables, options.rules);
    problems.push(...allowanceProblems(options.allow ?? {}, plans));
    problems.push(...(await checkConstants(client, plans)));
    if (problems.length > 0) {
      throw listProblems(
        "AIRLOCK_RULES_INVALID",
        `the masking rules do not fit production (${plural(problems.length, "problem")})`,
        problems,
        "fix masking.rules in airlock.config.ts; nothing was captured",
      );
    }
    const pii = await unruledPii(client, tables, options.rules, options.sampleSize);
    if (pii.length > 0) {
      const list = pii
        .map((s) => `  - ${s.column.schema}.${s.column.table}.${s.column.column} — ${s.reasons.join("; ")} — suggested: ${describeRule(s.suggested)}`)
        .join("\n");
      throw new AirlockError(
        "AIRLOCK_PII_UNRULED",
        `${pii.length} column${pii.length === 1 ? " looks" : "s look"} like personal data but ha${pii.length === 1 ? "s" : "ve"} no masking rule:\n${list}`,
        {
          hint: 'add a rule for each in masking.rules ("keep" marks a column as reviewed); `airlock snapshot --init-rules` prints a starting block',
          details: {
            columns: pii.map((s) => ({
              column: `${s.column.schema}.${s.column.table}.${s.column.column}`,
              reasons: s.reasons,
              suggested: describeRule(s.suggested),
            })),
          },
        },
      );
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
      writePrivate(join(tmp, SCHEMA_FILE), schemaSql);
      writePrivate(join(tmp, CATALOG_FILE), `${JSON.stringify(catalog)}\n`);
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
    const { allowed } = await scanSnapshotForLeaks(
      tmp,
      manifestTables,
      `${schemaSql}\n${JSON.stringify(catalog)}`,
      leaks,
      new AllowanceCheck(options.allow ?? {}, secret),
    );
    const leakScan = {
      ok: true as const,
      originalsChecked: leaks.originalsCount,
      fieldsScanned: leaks.fieldsScanned,
      elapsedMs: Date.now() - scanStarted,
      allowed,
    };

    options.onProgress?.({ phase: "checksums" });
    manifestTables.sort((a, b) => `${a.schema}.${a.name}`.localeCompare(`${b.schema}.${b.name}`));
    const files: Record<string, string> = {
      [SCHEMA_FILE]: await sha256File(join(tmp, SCHEMA_FILE)),
      [CATALOG_FILE]: await sha256File(join(tmp, CATALOG_FILE)),
    };
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
      catalog: { file: CATALOG_FILE, owners, roles: namedRoles(catalog, owners) },
      leakScan,
      elapsedMs: Date.now() - started,
    };
    try {
      writePrivate(join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
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
