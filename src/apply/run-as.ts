/**
 * DDL that evaluates an agent's expression never runs with the promoter's
 * rights. A change whose DDL calls functions that are not built in (see
 * `runsCode` in src/diff/types.ts) runs as the owner of its object in
 * production, through a SECURITY DEFINER function that owner owns: inside
 * it, current_user is that owner and neither `SET ROLE` nor
 * `SET SESSION AUTHORIZATION` is allowed, so the code cannot climb back to
 * the promoter. When that owner is a superuser there is no one safe to run
 * it as, and the promotion is refused before anything changes.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { Diff, SchemaChangeRecord } from "../diff/types.ts";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";
import { query, quoteIdent } from "../pg/connect.ts";
import { plural } from "../format/plural.ts";

type RunsCode = NonNullable<SchemaChangeRecord["runsCode"]>;

/** The role a change's DDL runs as. */
export interface CodeOwner {
  readonly role: string;
  readonly superuser: boolean;
  /** The connected role itself (no switch needed). */
  readonly current: boolean;
}

/**
 * Who owns the change's object in the target now: the relation or type when it exists; otherwise, for a
 * materialized view (which the owner then creates), its schema's owner; otherwise (a table this diff creates)
 * the connected role, who creates it. A schema owned by pg_database_owner means the database's owner.
 */
export async function codeOwner(c: pg.ClientBase, kind: SchemaChangeRecord["kind"], runs: RunsCode): Promise<CodeOwner> {
  const name = `${quoteIdent(runs.as.schema)}.${quoteIdent(runs.as.name)}`;
  const r = await query<CodeOwner>(
    c,
    `WITH o AS (
       SELECT coalesce(
         CASE WHEN $1 = 'relation' THEN (SELECT relowner FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($2))
              ELSE (SELECT typowner FROM pg_catalog.pg_type WHERE oid = pg_catalog.to_regtype($2)) END,
         CASE WHEN $4 THEN (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = $3) END,
         (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)) AS oid
     ), owner AS (
       SELECT CASE WHEN o.oid = 'pg_database_owner'::regrole THEN (SELECT datdba FROM pg_catalog.pg_database WHERE datname = current_database()) ELSE o.oid END AS oid FROM o
     )
     SELECT r.rolname AS role, r.rolsuper AS superuser, r.rolname = current_user AS current FROM owner JOIN pg_catalog.pg_roles r ON r.oid = owner.oid`,
    [runs.as.kind, name, runs.as.schema, kind === "matview"],
  );
  return r.rows[0]!;
}

function refusal(refused: ReadonlyArray<{ id: string; calls: readonly string[]; role: string }>): AirlockError {
  const list = refused.map(
    (x) => `  - ${x.id} calls ${x.calls.map((f) => f.replace(/^function /, "")).join(", ")}; its owner in production is ${x.role}, a superuser`,
  );
  return new AirlockError(
    "AIRLOCK_USER_CODE_AS_SUPERUSER",
    `${plural(refused.length, "schema change")} would run functions written in staging while the DDL runs, and would run them as a superuser; nothing was changed:\n${list.join("\n")}`,
    {
      hint: "have a role without superuser own those objects in production (ALTER TABLE … OWNER TO app_owner), or remove the function calls from the change",
      exitCode: EXIT_REFUSED,
      details: { changes: refused },
    },
  );
}

/** Refuses, before anything changes, a diff whose code-running DDL would run as a superuser. */
export async function checkCodeOwners(c: pg.ClientBase, diff: Pick<Diff, "schemaChanges">): Promise<void> {
  const refused: Array<{ id: string; calls: readonly string[]; role: string }> = [];
  for (const ch of diff.schemaChanges) {
    if (ch.runsCode === undefined) continue;
    const owner = await codeOwner(c, ch.kind, ch.runsCode);
    if (owner.superuser) refused.push({ id: ch.id, calls: ch.runsCode.calls, role: owner.role });
  }
  if (refused.length > 0) throw refusal(refused);
}

/** Runs statements of one change as its owner (inside the caller's transaction). */
export class OwnerRunner {
  private readonly wrappers = new Map<string, string>();

  constructor(private readonly client: pg.ClientBase) {}

  async run(change: Pick<SchemaChangeRecord, "id" | "kind">, runs: RunsCode, sql: string): Promise<void> {
    const owner = await codeOwner(this.client, change.kind, runs);
    if (owner.superuser) throw refusal([{ id: change.id, calls: runs.calls, role: owner.role }]);
    if (owner.current) {
      await query(this.client, sql);
      return;
    }
    await query(this.client, `SELECT ${await this.wrapper(owner.role)}($1)`, [sql]);
  }

  /** A SECURITY DEFINER function owned by `role` that executes its argument; temporary, dropped by close(). */
  private async wrapper(role: string): Promise<string> {
    const known = this.wrappers.get(role);
    if (known !== undefined) return known;
    const name = `pg_temp.${quoteIdent(`airlock_as_${randomBytes(4).toString("hex")}`)}`;
    await query(
      this.client,
      `CREATE FUNCTION ${name}(sql text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $airlock$ BEGIN EXECUTE sql; END $airlock$`,
    );
    await query(this.client, `REVOKE ALL ON FUNCTION ${name}(text) FROM PUBLIC`);
    await query(this.client, `ALTER FUNCTION ${name}(text) OWNER TO ${quoteIdent(role)}`);
    this.wrappers.set(role, name);
    return name;
  }

  /** Drops the wrappers. */
  async close(): Promise<void> {
    for (const name of this.wrappers.values()) await query(this.client, `DROP FUNCTION IF EXISTS ${name}(text)`);
    this.wrappers.clear();
  }
}
