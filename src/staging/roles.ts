/**
 * Roles on a staging server. The agent's role owns its work database; the
 * roles Airlock itself uses to read and replay an agent's work are made
 * per diff and dropped after it, so that nothing an agent wrote ever runs
 * with a superuser's rights:
 *
 * - a reader (`pg_read_all_data`, `BYPASSRLS`): reads every row, past any
 *   row-level security policy and without running a policy's functions,
 *   and can write nothing;
 * - a replayer: owns the replay clone and everything in it, so the diff's
 *   DDL runs as it runs for the agent, but cannot run programs, touch the
 *   server's files, or create roles or databases. It bypasses row-level
 *   security as the staging superuser did: the diff's rows are written as
 *   they are, and no policy's function runs while they are.
 *
 * Both log in with a fresh random password; the session user of their
 * connections is the role itself, so no code can `RESET ROLE` its way back
 * to a superuser.
 */
import { randomBytes } from "node:crypto";
import { serviceRoleName } from "../catalog/model.ts";
import { type PgTarget, makeTarget, query, quoteIdent, quoteLiteral, withClient } from "../pg/connect.ts";

/**
 * A query whose rows (`sql`) are the statements that make `role` the owner of every object in the connected
 * database: schemas, relations, routines and types, except the system's and extensions' own (sequences owned
 * by a column follow their table). Run by `handOver` here and, as a psql `\gexec` script, by the staging
 * container (src/staging/container-restore.ts).
 */
export function handOverQuery(role: string): string {
  const r = `${quoteLiteral(role)}::text`;
  return `SELECT format('ALTER SCHEMA %I OWNER TO %I', n.nspname, ${r}) AS sql
  FROM pg_namespace n
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\\_temp%' AND n.nspname NOT LIKE 'pg\\_toast%'
   AND n.nspowner <> 'pg_database_owner'::regrole
UNION ALL
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, ${r})
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
   AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, ${r})
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, ${r})
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND t.typtype IN ('e', 'd', 'r', 'm')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')`;
}

/** Makes `role` the owner of every object in a staging database (so it may run any DDL there, as the agent does in work). */
export async function handOver(target: PgTarget, role: string): Promise<void> {
  await withClient(target, { step: "up" }, async (c) => {
    const statements = await query<{ sql: string }>(c, handOverQuery(role));
    for (const s of statements.rows) await query(c, s.sql);
  });
}

/** A role Airlock made for one diff. */
export interface ServiceRole {
  readonly name: string;
  /** A connection target as this role to a database of the server. */
  target(database: string): PgTarget;
  /** Lets the role connect to a database. */
  allowConnect(database: string): Promise<void>;
  /** Revokes what it was granted on databases that still exist and drops the role. */
  drop(): Promise<void>;
}

/** Creates a reader or replayer role on the server of `admin` (a superuser target). */
export async function createServiceRole(admin: PgTarget, kind: "reader" | "replayer"): Promise<ServiceRole> {
  const name = serviceRoleName(kind, randomBytes(4).toString("hex"));
  const password = randomBytes(18).toString("base64url");
  const server = makeTarget({
    host: admin.host,
    port: admin.port,
    database: "postgres",
    user: admin.user,
    ...(admin.password === undefined ? {} : { password: admin.password }),
    params: { ...admin.params },
  });
  const granted = new Set<string>();
  await withClient(server, { step: "diff" }, async (c) => {
    // The statement carries the password: the cluster never logs statements (log_statement = none).
    await query(
      c,
      `CREATE ROLE ${quoteIdent(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS INHERIT CONNECTION LIMIT 8 PASSWORD ${quoteLiteral(password)}`,
    );
    if (kind === "reader") await query(c, `GRANT pg_read_all_data TO ${quoteIdent(name)}`);
  });
  return {
    name,
    target: (database) => makeTarget({ host: admin.host, port: admin.port, database, user: name, password, params: { ...admin.params } }),
    allowConnect: async (database) => {
      await withClient(server, { step: "diff" }, (c) => query(c, `GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${quoteIdent(name)}`));
      granted.add(database);
    },
    drop: () =>
      withClient(server, { step: "diff" }, async (c) => {
        for (const db of granted) {
          const exists = await query(c, "SELECT 1 FROM pg_database WHERE datname = $1", [db]);
          if (exists.rowCount === 1) await query(c, `REVOKE ALL ON DATABASE ${quoteIdent(db)} FROM ${quoteIdent(name)}`);
        }
        await query(c, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, [name]);
        await query(c, `DROP ROLE IF EXISTS ${quoteIdent(name)}`);
      }),
  };
}
