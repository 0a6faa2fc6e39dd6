/**
 * The embedded default backend: sessions on the local cluster Airlock runs
 * itself. Each snapshot is restored once into a template database; a
 * session's `base` and `work` are `CREATE DATABASE … TEMPLATE` copies of it,
 * ready in well under a second. The agent gets its own role: owner of `work`
 * and everything in it, nothing more.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { restoreSnapshot } from "../../seeders/restore.ts";
import { applyDatabaseSettings, checkRestoredCatalog } from "../catalog/restore.ts";
import { AirlockError } from "../errors.ts";
import { readSnapshotCatalog } from "../snapshot/store.ts";
import { type ClusterOptions, type LocalCluster, ensureCluster } from "../pg/cluster.ts";
import { type PgTarget, query, quoteIdent, quoteLiteral, withClient } from "../pg/connect.ts";
import type { AgentLimits, Provisioned, ProvisionRequest, StagingBackend } from "./backend.ts";
import { handOver } from "./roles.ts";

/** Database and role names of a session (ids are [a-z0-9-], so names need no quoting surprises). */
export function sessionObjectNames(sessionId: string): { base: string; work: string; role: string } {
  const s = sessionId.replace(/-/g, "_");
  return { base: `airlock_${s}_base`, work: `airlock_${s}_work`, role: `agent_${s}` };
}

/** The template database a snapshot is restored into, once. */
export function templateName(snapshotId: string): string {
  return `airlock_tpl_${snapshotId.replace(/^snap-/, "").replace(/-/g, "_")}`;
}

async function databaseExists(c: pg.ClientBase, name: string): Promise<boolean> {
  return (await query(c, "SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1;
}

/** Sessions on the embedded cluster. */
export class LocalBackend implements StagingBackend {
  readonly kind = "local" as const;
  private cluster: LocalCluster | undefined;

  constructor(private readonly clusterOptions: ClusterOptions) {}

  /** The staging cluster, created and started on demand. */
  async ensureCluster(): Promise<LocalCluster> {
    if (this.cluster === undefined) {
      this.cluster = await ensureCluster(this.clusterOptions);
      // Nobody but the superuser connects to the maintenance databases.
      await withClient(this.cluster.adminTarget(), { step: "up" }, async (c) => {
        await query(c, "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC");
        await query(c, "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC");
      });
    }
    return this.cluster;
  }

  async checkAvailable(): Promise<void> {
    await this.ensureCluster();
  }

  /** Restores the snapshot into its template database unless that exists already; returns the template's name. */
  async ensureTemplate(snapshot: ProvisionRequest["snapshot"]): Promise<string> {
    const cluster = await this.ensureCluster();
    const name = templateName(snapshot.manifest.id);
    const loading = `${name}_loading`;
    return withClient(cluster.adminTarget(), { step: "up" }, async (c) => {
      // Two sessions starting at once restore a snapshot only once.
      await query(c, "SELECT pg_advisory_lock(hashtext($1))", [name]);
      try {
        if (await databaseExists(c, name)) return name;
        await query(c, `DROP DATABASE IF EXISTS ${quoteIdent(loading)}`);
        await query(c, `CREATE DATABASE ${quoteIdent(loading)}`);
        try {
          await restoreSnapshot({ target: cluster.adminTarget(loading), dir: snapshot.dir, manifest: snapshot.manifest });
          const expected = readSnapshotCatalog(snapshot.dir, snapshot.manifest);
          if (expected !== null) {
            await withClient(cluster.adminTarget(loading), { step: "up" }, (lc) => checkRestoredCatalog(lc, expected, snapshot.manifest.catalog?.owners ?? [], snapshot.manifest.id));
          }
        } catch (e) {
          await query(c, `DROP DATABASE IF EXISTS ${quoteIdent(loading)}`).catch(() => undefined);
          throw e;
        }
        // Renamed only once complete: a template database is always a whole snapshot.
        await query(c, `ALTER DATABASE ${quoteIdent(loading)} RENAME TO ${quoteIdent(name)}`);
        await query(c, `ALTER DATABASE ${quoteIdent(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`);
        await query(c, `REVOKE CONNECT ON DATABASE ${quoteIdent(name)} FROM PUBLIC`);
        return name;
      } finally {
        await query(c, "SELECT pg_advisory_unlock(hashtext($1))", [name]).catch(() => undefined);
      }
    });
  }

  async provision(request: ProvisionRequest): Promise<Provisioned> {
    const cluster = await this.ensureCluster();
    const template = await this.ensureTemplate(request.snapshot);
    const names = sessionObjectNames(request.sessionId);
    const password = randomBytes(18).toString("base64url");
    try {
      await withClient(cluster.adminTarget(), { step: "up" }, async (c) => {
        for (const db of [names.base, names.work]) {
          if (await databaseExists(c, db)) {
            throw new AirlockError("AIRLOCK_SESSION_EXISTS", `the staging database ${db} exists already`, { hint: "choose another session name, or `airlock down` the old one" });
          }
        }
        // FILE_COPY copies the template's files instead of WAL-logging every block: three times
        // faster for a large snapshot, and its checkpoint is cheap on a cluster without fsync.
        const version = Number((await query<{ v: string }>(c, "SELECT current_setting('server_version_num') AS v")).rows[0]!.v);
        const strategy = version >= 150000 ? " STRATEGY = FILE_COPY" : "";
        // Both copies at once, on two connections: copying files is I/O, and the template only takes a share lock.
        await Promise.all([
          query(c, `CREATE DATABASE ${quoteIdent(names.base)} TEMPLATE ${quoteIdent(template)}${strategy}`),
          withClient(cluster.adminTarget(), { step: "up" }, (c2) => query(c2, `CREATE DATABASE ${quoteIdent(names.work)} TEMPLATE ${quoteIdent(template)}${strategy}`)),
        ]);
        for (const db of [names.base, names.work]) await query(c, `REVOKE CONNECT ON DATABASE ${quoteIdent(db)} FROM PUBLIC`);
        await this.createAgentRole(c, names.role, password, request.limits);
        await query(c, `GRANT CONNECT ON DATABASE ${quoteIdent(names.work)} TO ${quoteIdent(names.role)}`);
        await query(c, `ALTER DATABASE ${quoteIdent(names.work)} OWNER TO ${quoteIdent(names.role)}`);
      });
      // CREATE DATABASE … TEMPLATE does not copy ALTER DATABASE … SET: give both copies production's settings.
      const catalog = readSnapshotCatalog(request.snapshot.dir, request.snapshot.manifest);
      if (catalog !== null) for (const db of [names.base, names.work]) await withClient(cluster.adminTarget(db), { step: "up" }, (dc) => applyDatabaseSettings(dc, catalog));
      await handOver(cluster.adminTarget(names.work), names.role);
    } catch (e) {
      if (!(e instanceof AirlockError && e.code === "AIRLOCK_SESSION_EXISTS")) await this.destroy(request.sessionId).catch(() => undefined);
      throw e;
    }
    return {
      agent: { host: "127.0.0.1", port: cluster.port, database: names.work, user: names.role, password },
      backendState: { cluster: cluster.dir, template, base: names.base, work: names.work, role: names.role },
    };
  }

  private async createAgentRole(c: pg.ClientBase, role: string, password: string, limits: AgentLimits): Promise<void> {
    // The statement carries the password: the cluster never logs statements (log_statement = none).
    await query(
      c,
      `CREATE ROLE ${quoteIdent(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${Math.trunc(limits.connectionLimit)} PASSWORD ${quoteLiteral(password)}`,
    );
    await query(c, `ALTER ROLE ${quoteIdent(role)} SET statement_timeout = ${Math.trunc(limits.statementTimeoutMs)}`);
  }

  async adminTarget(sessionId: string, _state: Provisioned["backendState"], which: "base" | "work"): Promise<PgTarget> {
    const cluster = await this.ensureCluster();
    return cluster.adminTarget(sessionObjectNames(sessionId)[which]);
  }

  async destroy(sessionId: string): Promise<void> {
    const cluster = await this.ensureCluster();
    const names = sessionObjectNames(sessionId);
    await withClient(cluster.adminTarget(), { step: "down" }, async (c) => {
      // Keep the agent from reconnecting while its databases go away.
      await query(c, `SELECT 1 FROM pg_roles WHERE rolname = $1`, [names.role]).then(async (r) => {
        if (r.rowCount === 1) await query(c, `ALTER ROLE ${quoteIdent(names.role)} NOLOGIN`);
      });
      for (const db of [names.work, names.base]) await query(c, `DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
      await query(c, `DROP ROLE IF EXISTS ${quoteIdent(names.role)}`);
    });
  }

  /** Drops template databases no session uses any more except those listed. */
  async dropTemplate(snapshotId: string): Promise<void> {
    const cluster = await this.ensureCluster();
    const name = templateName(snapshotId);
    await withClient(cluster.adminTarget(), { step: "down" }, async (c) => {
      if (!(await databaseExists(c, name))) return;
      await query(c, `ALTER DATABASE ${quoteIdent(name)} WITH IS_TEMPLATE false`);
      await query(c, `DROP DATABASE ${quoteIdent(name)} WITH (FORCE)`);
    });
  }
}
