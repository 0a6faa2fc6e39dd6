/**
 * Where a diff does its work on the session's staging server: two roles made
 * for it and dropped after it (a reader that policies cannot filter, and an
 * unprivileged replayer), and fresh copies of base that the replayer owns,
 * so agent-written code in them never runs with a superuser's rights.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { CatalogModel, RoleMapping } from "../catalog/model.ts";
import { readCatalog } from "../catalog/read.ts";
import { settingSql } from "../catalog/sql.ts";
import { type PgTarget, inTransaction, makeTarget, query, quoteIdent, withClient } from "../pg/connect.ts";
import { type ServiceRole, createServiceRole, handOver } from "../staging/roles.ts";

function withDatabase(t: PgTarget, database: string): PgTarget {
  return makeTarget({
    host: t.host,
    port: t.port,
    database,
    user: t.user,
    ...(t.password === undefined ? {} : { password: t.password }),
    params: { ...t.params },
  });
}

/** The roles a diff reads and replays with (src/staging/roles.ts), made for it and dropped after it. */
export interface DiffRoles {
  readonly reader: ServiceRole;
  readonly replayer: ServiceRole;
}

/** A copy of base for replaying on: owned, with everything in it, by the replayer; readable by the reader. */
export interface Clone {
  /** As the replayer: where the diff's statements run. */
  readonly replay: PgTarget;
  /** As the reader. */
  readonly read: PgTarget;
  readonly drop: () => Promise<void>;
}

/** A fresh copy of the session's base on its server, handed over to the replayer; dropped by the returned function. */
export async function cloneBase(base: PgTarget, purpose: string, roles: DiffRoles): Promise<Clone> {
  const name = `${base.database.slice(0, 40)}_${purpose}_${randomBytes(3).toString("hex")}`;
  const admin = withDatabase(base, "postgres");
  const drop = () => withClient(admin, { step: "diff" }, (c) => query(c, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`)).then(() => undefined);
  await withClient(admin, { step: "diff" }, async (c) => {
    // Base is never handed out: any connection to it is ours, from an earlier step, and
    // normally closing. Give it a moment (terminating a closing client makes it raise an
    // error nobody listens to), then end whatever is left.
    for (let i = 0; i < 40; i++) {
      const r = await query<{ n: number }>(c, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [
        base.database,
      ]);
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
      const settings = await query<{ config: string[] }>(
        c,
        "SELECT s.setconfig AS config FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = $1 AND s.setrole = 0",
        [base.database],
      );
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
export async function withDiffRoles<T>(base: PgTarget, work: PgTarget, fn: (roles: DiffRoles) => Promise<T>): Promise<T> {
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

/** Runs `fn` in one transaction on a fresh connection to `target`. */
export async function transactionOn(target: PgTarget, fn: (c: pg.Client) => Promise<void>): Promise<void> {
  await withClient(target, { step: "diff" }, (c) => inTransaction(c, () => fn(c)));
}

/** The catalog model of a database, read on a connection of its own. */
export async function catalogOf(target: PgTarget, roles: RoleMapping): Promise<CatalogModel> {
  return withClient(target, { step: "diff", readOnly: true }, (c) => readCatalog(c, roles));
}
