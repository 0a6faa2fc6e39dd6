/**
 * `airlock diff <session>`: what the agent changed between the session's
 * base and work, as a verified diff. The data diff runs against a clone of
 * base with the schema changes applied (so new columns, backfills and type
 * changes compare like for like); then the whole diff is replayed on a
 * fresh clone of base through the same apply function promotion uses, and
 * only a replay that reproduces work table by table marks it verified.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { Project } from "../config/load.ts";
import { type PgTarget, makeTarget, openClient, query, quoteIdent, withClient } from "../pg/connect.ts";
import { type SchemaChange, planSchemaChanges, planStatements } from "../catalog/plan.ts";
import type { CatalogModel, RoleMapping } from "../catalog/model.ts";
import { callsOf, readCatalog } from "../catalog/read.ts";
import { compareCatalogs } from "../catalog/compare.ts";
import { settingSql } from "../catalog/sql.ts";
import { applyDiff } from "../promote/apply.ts";
import { ownRows } from "../promote/rows.ts";
import { FingerprintSet } from "../snapshot/leak-scan.ts";
import { readManifest, snapshotsDir } from "../snapshot/store.ts";
import { imposedAgentSettings } from "../staging/backend.ts";
import { type ServiceRole, createServiceRole, handOver } from "../staging/roles.ts";
import { type SessionRecord, readSession, sessionAdminTarget } from "../staging/sessions.ts";
import { type TableShape, diffTable, foreignKeyOrder, readShapes } from "./data-diff.ts";
import { schemaHazards, sortHazards, tableHazards } from "./hazards.ts";
import { type Diff, type Hazard, type SchemaChangeRecord, type TableChanges, type Verification, forwardSchema } from "./types.ts";

/** Progress for a terminal. */
export type DiffProgress = { readonly phase: "schema" | "data" | "hazards" | "replay" | "verify"; readonly table?: string };

function withDatabase(t: PgTarget, database: string): PgTarget {
  return makeTarget({ host: t.host, port: t.port, database, user: t.user, ...(t.password === undefined ? {} : { password: t.password }), params: { ...t.params } });
}

/** The roles a diff reads and replays with (src/staging/roles.ts), made for it and dropped after it. */
interface DiffRoles {
  readonly reader: ServiceRole;
  readonly replayer: ServiceRole;
}

/** A copy of base for replaying on: owned, with everything in it, by the replayer; readable by the reader. */
interface Clone {
  /** As the replayer: where the diff's statements run. */
  readonly replay: PgTarget;
  /** As the reader. */
  readonly read: PgTarget;
  readonly drop: () => Promise<void>;
}

/** A fresh copy of the session's base on its server, handed over to the replayer; dropped by the returned function. */
async function cloneBase(base: PgTarget, purpose: string, roles: DiffRoles): Promise<Clone> {
  const name = `${base.database.slice(0, 40)}_${purpose}_${randomBytes(3).toString("hex")}`;
  const admin = withDatabase(base, "postgres");
  const drop = () => withClient(admin, { step: "diff" }, (c) => query(c, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)).then(() => undefined);
  await withClient(admin, { step: "diff" }, async (c) => {
    // Base is never handed out: any connection to it is ours, from an earlier step, and
    // normally closing. Give it a moment (terminating a closing client makes it raise an
    // error nobody listens to), then end whatever is left.
    for (let i = 0; i < 40; i++) {
      const r = await query<{ n: number }>(c, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [base.database]);
      if (r.rows[0]!.n === 0) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    await query(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [base.database]);
    const v = Number((await query<{ v: string }>(c, "SELECT current_setting('server_version_num') AS v")).rows[0]!.v);
    await query(c, `CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(base.database)}${v >= 150000 ? " STRATEGY = FILE_COPY" : ""}`);
  });
  try {
    await withClient(admin, { step: "diff" }, async (c) => {
      // A copy does not inherit the database's privileges or settings: give it base's, so it compares like base.
      await query(c, `REVOKE CONNECT ON DATABASE ${quoteIdent(name)} FROM PUBLIC`);
      const settings = await query<{ config: string[] }>(c, "SELECT s.setconfig AS config FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = $1 AND s.setrole = 0", [base.database]);
      for (const item of settings.rows[0]?.config ?? []) {
        const at = item.indexOf("=");
        await withClient(withDatabase(base, name), { step: "diff" }, (cc) => query(cc, settingSql("database", false, item.slice(0, at), item.slice(at + 1))));
      }
      await query(c, `ALTER DATABASE ${quoteIdent(name)} OWNER TO ${quoteIdent(roles.replayer.name)}`);
    });
    // The replayer owns what the agent owns in work: the diff's DDL runs as it ran for the agent, never as a superuser.
    await handOver(withDatabase(base, name), roles.replayer.name);
    await roles.replayer.allowConnect(name);
    await roles.reader.allowConnect(name);
  } catch (e) {
    await drop().catch(() => undefined);
    throw e;
  }
  return { replay: roles.replayer.target(name), read: roles.reader.target(name), drop };
}

/**
 * Runs `fn` with a reader and a replayer made for it on the session's server (the reader may
 * connect to base and work), and drops both after it, whatever happens.
 */
async function withDiffRoles<T>(base: PgTarget, work: PgTarget, fn: (roles: DiffRoles) => Promise<T>): Promise<T> {
  const reader = await createServiceRole(base, "reader");
  try {
    const replayer = await createServiceRole(base, "replayer");
    try {
      await reader.allowConnect(base.database);
      await reader.allowConnect(work.database);
      return await fn({ reader, replayer });
    } finally {
      await replayer.drop();
    }
  } finally {
    await reader.drop();
  }
}

async function inTransaction(target: PgTarget, fn: (c: pg.Client) => Promise<void>): Promise<void> {
  await withClient(target, { step: "diff" }, async (c) => {
    await query(c, "BEGIN");
    try {
      await fn(c);
      await query(c, "COMMIT");
    } catch (e) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw e;
    }
  });
}

/**
 * Per-table multiset checksums: the row count and the sums of two 64-bit
 * hashes of each row (hash_record_extended with two seeds, no text, no sort,
 * no memory). Equal values hash alike, so a change only in how a value is
 * written (1.5 vs 1.50 in an unconstrained numeric) is not seen here. A table
 * with a type that cannot be hashed falls back to the md5 of its row text.
 */
async function tableChecksums(c: pg.ClientBase, shapes: readonly TableShape[]): Promise<Map<string, string>> {
  // Enums (and reg* types) hash by OID, which differs between databases: those tables use row text.
  const byOid = new Set(
    (
      await query<{ t: string }>(
        c,
        `SELECT DISTINCT n.nspname || '.' || r.relname AS t FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid JOIN pg_namespace n ON n.oid = r.relnamespace
           JOIN pg_type ty ON ty.oid = a.atttypid LEFT JOIN pg_type el ON el.oid = ty.typelem
          WHERE a.attnum > 0 AND NOT a.attisdropped AND r.relkind IN ('r', 'p')
            AND (ty.typtype IN ('e', 'd', 'c', 'r', 'm') OR el.typtype IN ('e', 'd', 'c') OR ty.typname LIKE 'reg%' OR ty.typname = 'oid')`,
      )
    ).rows.map((x) => x.t),
  );
  const out = new Map<string, string>();
  for (const s of shapes) {
    const cols = [...s.columns].sort((a, b) => (a.name < b.name ? -1 : 1)).map((x) => quoteIdent(x.name));
    const table = ownRows(s.schema, s.name, s.partitioned);
    const row = `ROW(${cols.join(", ")})`;
    let r = byOid.has(`${s.schema}.${s.name}`)
      ? undefined
      : await c.query<{ n: string; h: string | null }>(`SELECT count(*)::text AS n, sum(hash_record_extended(${row}, 0)::numeric) || '.' || sum(hash_record_extended(${row}, 1)::numeric) AS h FROM ${table}`).catch(() => undefined);
    if (r === undefined) {
      r = await query<{ n: string; h: string | null }>(
        c,
        `SELECT count(*)::text AS n, sum(('x' || left(h, 16))::bit(64)::bigint::numeric) || '.' || sum(('x' || right(h, 16))::bit(64)::bigint::numeric) AS h
           FROM (SELECT md5(${row}::text) AS h FROM ${table}) x`,
      );
    }
    out.set(`${s.schema}.${s.name}`, `${r.rows[0]!.n}:${r.rows[0]!.h ?? ""}`);
  }
  return out;
}

/**
 * Which of the diff's inserted or updated values are masking output: the
 * values present in base's masked columns (per the snapshot's rules), asked
 * of base for just the candidate values.
 */
async function maskedValueSet(base: pg.ClientBase, project: Project, snapshotId: string, tables: readonly TableChanges[]): Promise<FingerprintSet | null> {
  const candidates = [...new Set(tables.flatMap((t) => t.changes.flatMap((c) => (c.kind === "delete" ? [] : Object.values(c.kind === "insert" ? c.row : c.new)))).filter((v): v is string => v !== null && v.length >= 4))];
  if (candidates.length === 0) return null;
  const manifest = readManifest(snapshotsDir(project.statePath()), snapshotId);
  const set = new FingerprintSet();
  for (const t of manifest.tables) {
    for (const col of t.columns) {
      if (col.rule === "keep" || col.rule === "null" || col.rule.startsWith("constant(") || col.rule.startsWith("dateShift(")) continue;
      const exists = await query(base, "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped", [`${quoteIdent(t.schema)}.${quoteIdent(t.name)}`, col.name]);
      if (exists.rowCount === 0) continue;
      // Captured tables are plain (partitions as their leaves: src/snapshot/catalog.ts).
      const found = await query<{ v: string }>(base, `SELECT DISTINCT ${quoteIdent(col.name)}::text AS v FROM ${ownRows(t.schema, t.name, false)} WHERE ${quoteIdent(col.name)}::text = ANY($1::text[])`, [candidates]);
      for (const r of found.rows) set.add(r.v);
    }
  }
  return set.size === 0 ? null : set;
}

async function sequenceHazards(base: pg.ClientBase, work: pg.ClientBase): Promise<Hazard[]> {
  const sql = "SELECT schemaname || '.' || sequencename AS name, last_value::text AS v FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'airlock')";
  const before = new Map((await query<{ name: string; v: string | null }>(base, sql)).rows.map((r) => [r.name, r.v]));
  const out: Hazard[] = [];
  for (const r of (await query<{ name: string; v: string | null }>(work, sql)).rows) {
    const b = before.get(r.name);
    if (b !== undefined && b !== null && (r.v === null || BigInt(r.v) < BigInt(b))) {
      out.push({ code: "SEQUENCE_BACKWARDS", severity: "warn", object: r.name, message: `sequence ${r.name} moved backwards (${b} → ${r.v ?? "reset"}); new rows could reuse keys` });
    }
  }
  return out;
}

/**
 * Whether a change's DDL evaluates an expression that calls functions that are not built in, and as whose
 * owner it must then run in production: a column's default or generated expression (filled in for existing
 * rows), a CHECK or exclusion constraint (checked against them), an index's expressions, a materialized
 * view's query. Views, policies and triggers only store their code; it runs later, for whoever uses them.
 */
function codeRunBy(c: SchemaChange, model: CatalogModel, before: CatalogModel): SchemaChangeRecord["runsCode"] {
  const o = c.after;
  if (o === null || c.action === "drop") return undefined;
  // A column of a table this diff creates is created with it, before it has rows: nothing is evaluated.
  if (o.kind === "column" && before.objects[o.table] === undefined) return undefined;
  const calls = callsOf(model, c.id);
  if (calls.length === 0) return undefined;
  const ownerId = o.kind === "column" ? o.table : o.kind === "constraint" || o.kind === "index" ? o.on : o.kind === "matview" ? o.id : undefined;
  const owner = ownerId === undefined ? undefined : model.objects[ownerId];
  if (owner === undefined || (owner.kind !== "table" && owner.kind !== "matview" && owner.kind !== "type")) return undefined;
  return { calls, as: { kind: owner.kind === "type" ? "type" : "relation", schema: owner.schema, name: owner.name } };
}

/** The catalog model of a database, read on a connection of its own. */
async function catalogOf(target: PgTarget, roles: RoleMapping): Promise<CatalogModel> {
  return withClient(target, { step: "diff", readOnly: true }, (c) => readCatalog(c, roles));
}

/**
 * Replays the diff on a fresh clone of base and compares the result with
 * work: the whole catalog model (every object, its definition, owner,
 * privileges, comment, state) and every table's rows. The replay runs as
 * the replayer; everything is read as the reader.
 */
async function verifyByReplay(base: PgTarget, work: PgTarget, workModel: CatalogModel, mapping: RoleMapping, roles: DiffRoles, diff: Diff, onProgress?: (p: DiffProgress) => void): Promise<Verification> {
  onProgress?.({ phase: "replay" });
  const clone = await cloneBase(base, "replay", roles);
  try {
    try {
      await inTransaction(clone.replay, async (c) => {
        await applyDiff(c, diff, { replay: true });
      });
    } catch (e) {
      return { verified: false, mismatches: [], schemaDifference: [], error: e instanceof Error ? e.message : String(e) };
    }
    onProgress?.({ phase: "verify" });
    // The replayer's settings in this database stand for the agent's. Settings of a role everywhere are not
    // replayed on a shared server (they are applied by promotion only, as danger hazards).
    const replayed = await catalogOf(clone.read, { ...mapping, settingsRole: roles.replayer.name });
    const schemaDifference = compareCatalogs(replayed, workModel, { ignore: (o) => o.kind === "setting" && o.scope === "role" && !o.inDatabase }).map((d) => `${d.id}: ${d.difference}`);
    const mismatches: Array<{ table: string; keys: string[] }> = [];
    await withClient(clone.read, { step: "diff", readOnly: true }, (cc) =>
      withClient(work, { step: "diff", readOnly: true }, async (wc) => {
        const { shapes } = await readShapes(wc);
        const [a, b] = [await tableChecksums(cc, shapes), await tableChecksums(wc, shapes)];
        for (const s of shapes) {
          const id = `${s.schema}.${s.name}`;
          if (a.get(id) === b.get(id)) continue;
          const d = await diffTable(cc, wc, s);
          mismatches.push({ table: id, keys: d.changes.slice(0, 5).map((ch) => JSON.stringify(ch.kind === "insert" ? ch.row : ch.key)) });
        }
      }),
    );
    return { verified: schemaDifference.length === 0 && mismatches.length === 0, mismatches, schemaDifference };
  } finally {
    await clone.drop();
  }
}

/**
 * Which roles are "the owner" in a session's databases: the staging
 * superuser (base), the agent (work), the replayer (replay clones) and
 * production's owners (their placeholders); Airlock's own limits on the
 * agent's role are not part of the model.
 */
export function sessionRoles(admin: PgTarget, agentRole: string, productionOwners: readonly string[], imposed: readonly string[], replayer?: string): RoleMapping {
  return {
    owners: new Set([admin.user, agentRole, ...productionOwners, ...(replayer === undefined ? [] : [replayer])]),
    imposedRoleSettings: new Set(imposed),
  };
}

/** A session's base and work (superuser targets), and the role mapping of its models. */
async function sessionDatabases(project: Project, sessionId: string) {
  const session = readSession(project, sessionId);
  const base = await sessionAdminTarget(project, sessionId, "base");
  const work = await sessionAdminTarget(project, sessionId, "work");
  const manifest = readManifest(snapshotsDir(project.statePath()), session.snapshotId);
  const quota = session.backendState.diskQuotaBytes;
  const imposed = imposedAgentSettings({ statementTimeoutMs: project.config.staging.statementTimeout, ...(typeof quota === "number" ? { diskQuotaBytes: quota } : {}) });
  const mapping = (roles: DiffRoles) => sessionRoles(base, session.agent.user, manifest.catalog?.owners ?? [], imposed, roles.replayer.name);
  return { session, base, work, mapping };
}

/**
 * Replays a diff of a session on a fresh clone of its base and compares the
 * result with its work: catalog model and rows (what `airlock diff` does
 * after computing a diff; also for checking a diff from elsewhere).
 */
export async function verifyDiff(project: Project, sessionId: string, diff: Diff, onProgress?: (p: DiffProgress) => void): Promise<Verification> {
  const { session, base, work, mapping } = await sessionDatabases(project, sessionId);
  return withDiffRoles(base, work, async (roles) => {
    const workRead = roles.reader.target(work.database);
    const workModel = await catalogOf(workRead, { ...mapping(roles), settingsRole: session.agent.user });
    return verifyByReplay(base, workRead, workModel, mapping(roles), roles, diff, onProgress);
  });
}

/** Computes the diff of a session (not yet written to disk). */
export async function computeDiff(project: Project, sessionId: string, options: { onProgress?: (p: DiffProgress) => void; now?: Date } = {}): Promise<Diff> {
  const { session, base, work, mapping } = await sessionDatabases(project, sessionId);
  return withDiffRoles(base, work, (roles) => computeWithRoles(project, session, base, work, mapping(roles), roles, options));
}

async function computeWithRoles(
  project: Project,
  session: SessionRecord,
  baseAdmin: PgTarget,
  workAdmin: PgTarget,
  roles: RoleMapping,
  diffRoles: DiffRoles,
  options: { onProgress?: (p: DiffProgress) => void; now?: Date },
): Promise<Diff> {
  // Everything is read as the reader; only cloning and handing over need the superuser.
  const base = diffRoles.reader.target(baseAdmin.database);
  const work = diffRoles.reader.target(workAdmin.database);
  options.onProgress?.({ phase: "schema" });
  const baseModel = await catalogOf(base, roles);
  const workModel = await catalogOf(work, { ...roles, settingsRole: session.agent.user });
  const changes = planSchemaChanges(baseModel, workModel);
  const schemaChanges: SchemaChangeRecord[] = changes.map((c) => {
    const o = c.before ?? c.after!;
    const table = o.kind === "table" ? o : o.kind === "column" ? (baseModel.objects[o.table] ?? workModel.objects[o.table]) : undefined;
    const target = table?.kind === "table" ? { schema: table.schema, table: table.name, ...(o.kind === "column" ? { column: o.name } : {}) } : undefined;
    const serverWide = o.kind === "setting" && o.scope === "role" && !o.inDatabase;
    const runsCode = codeRunBy(c, workModel, baseModel);
    return {
      id: c.id,
      kind: c.kind,
      action: c.action,
      changed: c.changed,
      ...(c.forcedBy === undefined ? {} : { forcedBy: c.forcedBy }),
      ...(serverWide ? { serverWide: true as const } : {}),
      ...(target === undefined ? {} : { target }),
      ...(runsCode === undefined ? {} : { runsCode }),
      sql: c.sql,
      afterData: c.afterData,
    };
  });
  const reverseSchema = planStatements(planSchemaChanges(workModel, baseModel));
  const schema = forwardSchema({ schemaChanges }).before;

  const clone = await cloneBase(baseAdmin, "diff", diffRoles);
  let tables: TableChanges[] = [];
  let hazards: Hazard[] = [];
  let schemaError: string | undefined;
  try {
    if (schema.length > 0) {
      try {
        await inTransaction(clone.replay, async (c) => {
          await query(c, "SELECT set_config('check_function_bodies', 'off', true)");
          for (const s of schema) await query(c, s);
        });
      } catch (e) {
        // The schema changes alone do not apply to base: the data cannot be compared, and the diff cannot be verified.
        schemaError = `the schema changes do not apply to base: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    const cc = await openClient(clone.read, { step: "diff", readOnly: true });
    const wc = await openClient(work, { step: "diff", readOnly: true });
    const bc = await openClient(base, { step: "diff", readOnly: true });
    try {
      const { shapes, foreignKeys } = await readShapes(wc);
      const inClone = new Set((await readShapes(cc)).shapes.map((s) => `${s.schema}.${s.name}`));
      const byName = new Map(shapes.map((s) => [`${s.schema}.${s.name}`, s]));
      const changed: TableChanges[] = [];
      // Tables whose checksums match on both sides are unchanged: no need to stream and merge them.
      const candidates = shapes.filter((sh) => inClone.has(`${sh.schema}.${sh.name}`));
      const [before, after] = [await tableChecksums(cc, candidates), await tableChecksums(wc, candidates)];
      const unchanged = new Set(candidates.map((sh) => `${sh.schema}.${sh.name}`).filter((id) => before.get(id) === after.get(id)));
      for (const id of schemaError === undefined ? foreignKeyOrder([...byName.keys()], foreignKeys) : []) {
        if (unchanged.has(id)) continue;
        options.onProgress?.({ phase: "data", table: id });
        // Two connections stream at once on purpose: the merge reads both sides in step.
        const t = await diffTable(inClone.has(id) ? cc : null, wc, byName.get(id)!);
        if (t.changes.length > 0) changed.push(t);
      }
      tables = changed;
      options.onProgress?.({ phase: "hazards" });
      // Exact row counts of the tables the schema changes touch (what a drop would lose).
      const counts = new Map<string, number>();
      for (const ch of changes) {
        const o = ch.before ?? ch.after;
        const table = o?.kind === "table" ? o : o?.kind === "column" ? baseModel.objects[o.table] : undefined;
        if (table?.kind !== "table" || baseModel.objects[table.id] === undefined || counts.has(`${table.schema}.${table.name}`)) continue;
        const r = await query<{ n: string }>(bc, `SELECT count(*)::text AS n FROM ${ownRows(table.schema, table.name, table.relkind === "partitioned")}`);
        counts.set(`${table.schema}.${table.name}`, Number(r.rows[0]?.n ?? 0));
      }
      const needsMasked = tables.some((t) => t.changes.some((c) => c.kind !== "delete"));
      const masked = needsMasked ? await maskedValueSet(bc, project, session.snapshotId, tables) : null;
      hazards = sortHazards([
        ...schemaHazards(changes, baseModel, workModel, (t) => counts.get(t) ?? 0),
        ...tables.flatMap((t) => tableHazards(t, project.config.hazards, masked)),
        ...(await sequenceHazards(bc, wc)),
      ]);
    } finally {
      await Promise.all([cc.end(), wc.end(), bc.end()].map((p) => p.catch(() => undefined)));
    }
  } finally {
    await clone.drop();
  }

  const summary = {
    inserts: tables.reduce((n, t) => n + t.changes.filter((c) => c.kind === "insert").length, 0),
    updates: tables.reduce((n, t) => n + t.changes.filter((c) => c.kind === "update").length, 0),
    deletes: tables.reduce((n, t) => n + t.changes.filter((c) => c.kind === "delete").length, 0),
    ddl: schemaChanges.reduce((n, c) => n + c.sql.length + c.afterData.length, 0),
  };
  const draft: Diff = {
    formatVersion: 2,
    session: session.id,
    snapshot: session.snapshotId,
    createdAt: (options.now ?? new Date()).toISOString(),
    schemaChanges,
    reverseSchema,
    tables,
    hazards,
    verification: { verified: false, mismatches: [], schemaDifference: [] },
    summary,
  };
  if (schemaError !== undefined) return { ...draft, verification: { verified: false, mismatches: [], schemaDifference: [], error: schemaError } };
  return { ...draft, verification: await verifyByReplay(baseAdmin, work, workModel, roles, diffRoles, draft, options.onProgress) };
}
