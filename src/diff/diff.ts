/**
 * `airlock diff <session>`: what the agent changed between the session's
 * base and work, as a verified diff. The data diff runs against a clone of
 * base with the schema changes applied (so new columns, backfills and type
 * changes compare like for like); then the whole diff is replayed on a
 * fresh clone of base through the same apply function promotion uses, and
 * only a replay that reproduces work table by table marks it verified
 * (replay.ts; the roles and clones both use are in clones.ts).
 */
import type pg from "pg";
import type { Project } from "../config/load.ts";
import { type PgTarget, openClient, query, quoteIdent } from "../pg/connect.ts";
import { type SchemaChange, planSchemaChanges } from "../catalog/plan.ts";
import type { CatalogModel, RoleMapping } from "../catalog/model.ts";
import { callsOf } from "../catalog/read.ts";
import { ownRows } from "../pg/table-names.ts";
import { FingerprintSet } from "../snapshot/fingerprint.ts";
import { readManifest, snapshotsDir } from "../snapshot/store.ts";
import { imposedAgentSettings } from "../staging/backend.ts";
import { type SessionRecord, readSession, sessionAdminTarget } from "../staging/sessions.ts";
import { type DiffRoles, catalogOf, cloneBase, transactionOn, withDiffRoles } from "./clones.ts";
import { diffTable, foreignKeyOrder, readShapes } from "./data-diff.ts";
import { schemaHazards, sortHazards, tableHazards } from "./hazards.ts";
import { tableChecksums, verifyByReplay } from "./replay.ts";
import { type Diff, type Hazard, type SchemaChangeRecord, type TableChanges, type Verification, forwardSchema } from "./types.ts";

/**
 * The phases of a diff, each told as it starts: `schema` (both catalogs read and compared), `clone` (base cloned,
 * the schema changes applied to it), `checksums` (which tables changed), `data` (rows compared, once per changed
 * table), `hazards`, `replay` (the diff applied to a fresh clone of base), `verify` (the replay compared with work).
 */
export type DiffProgress = {
  readonly phase: "schema" | "clone" | "checksums" | "data" | "hazards" | "replay" | "verify";
  readonly table?: string;
};

/**
 * Which of the diff's inserted or updated values are masking output: the
 * values present in base's masked columns (per the snapshot's rules), asked
 * of base for just the candidate values.
 */
async function maskedValueSet(base: pg.ClientBase, project: Project, snapshotId: string, tables: readonly TableChanges[]): Promise<FingerprintSet | null> {
  const candidates = [
    ...new Set(
      tables
        .flatMap((t) => t.changes.flatMap((c) => (c.kind === "delete" ? [] : Object.values(c.kind === "insert" ? c.row : c.new))))
        .filter((v): v is string => v !== null && v.length >= 4),
    ),
  ];
  if (candidates.length === 0) return null;
  const manifest = readManifest(snapshotsDir(project.statePath()), snapshotId);
  const set = new FingerprintSet();
  for (const t of manifest.tables) {
    for (const col of t.columns) {
      if (col.rule === "keep" || col.rule === "null" || col.rule.startsWith("constant(") || col.rule.startsWith("dateShift(")) continue;
      const exists = await query(base, "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped", [
        `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`,
        col.name,
      ]);
      if (exists.rowCount === 0) continue;
      // Captured tables are plain (partitions as their leaves: src/snapshot/catalog.ts).
      const found = await query<{ v: string }>(
        base,
        `SELECT DISTINCT ${quoteIdent(col.name)}::text AS v FROM ${ownRows(t.schema, t.name, false)} WHERE ${quoteIdent(col.name)}::text = ANY($1::text[])`,
        [candidates],
      );
      for (const r of found.rows) set.add(r.v);
    }
  }
  return set.size === 0 ? null : set;
}

async function sequenceHazards(base: pg.ClientBase, work: pg.ClientBase): Promise<Hazard[]> {
  const sql =
    "SELECT schemaname || '.' || sequencename AS name, last_value::text AS v FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'airlock')";
  const before = new Map((await query<{ name: string; v: string | null }>(base, sql)).rows.map((r) => [r.name, r.v]));
  const out: Hazard[] = [];
  for (const r of (await query<{ name: string; v: string | null }>(work, sql)).rows) {
    const b = before.get(r.name);
    if (b !== undefined && b !== null && (r.v === null || BigInt(r.v) < BigInt(b))) {
      out.push({
        code: "SEQUENCE_BACKWARDS",
        severity: "warn",
        object: r.name,
        message: `sequence ${r.name} moved backwards (${b} → ${r.v ?? "reset"}); new rows could reuse keys`,
      });
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

/**
 * Which roles are "the owner" in a session's databases: the staging
 * superuser (base), the agent (work), the replayer (replay clones) and
 * production's owners (their placeholders); Airlock's own limits on the
 * agent's role are not part of the model.
 */
export function sessionRoles(
  admin: PgTarget,
  agentRole: string,
  productionOwners: readonly string[],
  imposed: readonly string[],
  replayer?: string,
): RoleMapping {
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
  const imposed = imposedAgentSettings({
    statementTimeoutMs: project.config.staging.statementTimeout,
    ...(typeof quota === "number" ? { diskQuotaBytes: quota } : {}),
  });
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
  const schema = forwardSchema({ schemaChanges }).before;

  options.onProgress?.({ phase: "clone" });
  const clone = await cloneBase(baseAdmin, "diff", diffRoles);
  let tables: TableChanges[] = [];
  let hazards: Hazard[] = [];
  let schemaError: string | undefined;
  try {
    if (schema.length > 0) {
      try {
        await transactionOn(clone.replay, async (c) => {
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
      options.onProgress?.({ phase: "checksums" });
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
    tables,
    hazards,
    verification: { verified: false, mismatches: [], schemaDifference: [] },
    summary,
  };
  if (schemaError !== undefined) return { ...draft, verification: { verified: false, mismatches: [], schemaDifference: [], error: schemaError } };
  return { ...draft, verification: await verifyByReplay(baseAdmin, work, workModel, roles, diffRoles, draft, options.onProgress) };
}
