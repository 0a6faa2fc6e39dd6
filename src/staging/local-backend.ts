/**
 * The embedded default backend: sessions on the local cluster Airlock runs
 * itself. Each snapshot is restored once into a template database; a
 * session's `base` and `work` are `CREATE DATABASE … TEMPLATE` copies of it,
 * ready in well under a second. The agent gets its own role: owner of `work`
 * and everything in it, nothing more.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { withLockFile } from "../config/claims.ts";
import { ensureStateRoot } from "../config/private-files.ts";
import type pg from "pg";
import { applyDatabaseSettings, checkRestoredCatalog } from "../catalog/restore.ts";
import { AirlockError } from "../errors.ts";
import { restoreSnapshot } from "../snapshot/restore.ts";
import { readSnapshotCatalog } from "../snapshot/store.ts";
import { type ClusterOptions, type LocalCluster, ensureCluster } from "../pg/cluster.ts";
import { type PgTarget, query, quoteIdent, quoteLiteral, withClient } from "../pg/connect.ts";
import { type AgentLimits, type Provisioned, type ProvisionRequest, type StagingBackend, imposedAgentSettings } from "./backend.ts";
import { clusterLockFile, markClusterOpened } from "./idle-stop.ts";
import { handOver } from "./roles.ts";
import { ensureSupervisor } from "./supervisor.ts";

/**
 * Database and role names of a session (ids are [a-z0-9-], so names need no quoting surprises). The agent's
 * role is named like its work database: pg_hba.conf lets agent roles reach only `sameuser` databases.
 */
export function sessionObjectNames(sessionId: string): { base: string; work: string; role: string } {
  const s = sessionId.replace(/-/g, "_");
  return { base: `airlock_${s}_base`, work: `airlock_${s}_work`, role: `airlock_${s}_work` };
}

/** The group every agent role is in: what pg_hba.conf names them by. */
export const AGENTS_GROUP = "airlock_agents";

/** Connections kept free of sessions for Airlock's own roles (diff readers and replayers, the supervisor, admin). */
const RESERVED_CONNECTIONS = 24;

/**
 * The staging cluster's pg_hba.conf. Postgres listens only on its Unix socket (a 0700 directory); agents come
 * in through the supervisor's proxy, which authenticates them and connects with their password.
 */
function hbaConf(superuser: string): string {
  return [
    "# Written by Airlock (src/staging/local-backend.ts) whenever it opens the staging cluster; edits are lost.",
    "# Airlock itself, with the superuser's password (never trust: no socket an agent could reach lets anyone in unasked).",
    `local   all        ${quoteIdent(superuser)}   scram-sha-256`,
    "# An agent's role reaches only the database named like it (its work), with its password, whatever it GRANTs.",
    `local   sameuser   +${AGENTS_GROUP}   scram-sha-256`,
    `local   all        +${AGENTS_GROUP}   reject`,
    "# Airlock's per-diff reader and replayer roles, with their passwords.",
    "local   all        all   scram-sha-256",
    "",
  ].join("\n");
}

/** The template database a snapshot is restored into, once. */
export function templateName(snapshotId: string): string {
  return `airlock_tpl_${snapshotId.replace(/^snap-/, "").replace(/-/g, "_")}`;
}

async function databaseExists(c: pg.ClientBase, name: string): Promise<boolean> {
  return (await query(c, "SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1;
}

/** Drops a template's `…_loading` database, ending any connection still in it (the caller holds the snapshot's lock). */
async function dropLoading(c: pg.ClientBase, loading: string): Promise<void> {
  await query(c, `DROP DATABASE IF EXISTS ${quoteIdent(loading)} WITH (FORCE)`);
}

/** Marks a restored template as one (again, should an `up` have been killed between its rename and this). */
async function finishTemplate(c: pg.ClientBase, name: string): Promise<void> {
  const r = await query<{ datistemplate: boolean; datallowconn: boolean }>(c, "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1", [name]);
  if (r.rows[0]?.datistemplate === true && r.rows[0]?.datallowconn === false) return;
  await query(c, `ALTER DATABASE ${quoteIdent(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`);
  await query(c, `REVOKE CONNECT ON DATABASE ${quoteIdent(name)} FROM PUBLIC`);
}

/** Ends the server-side CREATE DATABASE statements still running for these databases, and waits until they are gone. */
async function endCreations(c: pg.ClientBase, databases: readonly string[]): Promise<void> {
  const pattern = `^\\s*CREATE\\s+DATABASE\\s+"?(${databases.join("|")})"?(\\s|;|$)`;
  const running = "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query ~* $1";
  const pids = (await query<{ pid: number }>(c, running, [pattern])).rows.map((r) => r.pid);
  if (pids.length === 0) return;
  await query(c, "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [pids]);
  for (let waited = 0; waited < 10_000; waited += 100) {
    if ((await query(c, "SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1::int[])", [pids])).rowCount === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sessions on the embedded cluster. */
export class LocalBackend implements StagingBackend {
  readonly kind = "local" as const;
  private cluster: LocalCluster | undefined;

  private proxyPort: number | undefined;

  /**
   * `sessionsDir`: where session records are, for the supervisor; `idleStopMs`: how long the cluster may go unneeded
   * before the supervisor stops it (null: never; `local.idleStop`).
   */
  constructor(
    private readonly clusterOptions: ClusterOptions,
    private readonly sessionsDir: string,
    private readonly idleStopMs: number | null = null,
  ) {}

  /** The staging cluster, created and started on demand, with its access rules and its supervisor. */
  async ensureCluster(): Promise<LocalCluster> {
    if (this.cluster === undefined) {
      // The state root must let the server user pass through to a cluster directory inside it.
      ensureStateRoot(dirname(this.sessionsDir));
      // Two commands starting at once (two `airlock up`) would both create the cluster: one does, the other waits.
      const cluster = await withLockFile(clusterLockFile(this.clusterOptions.dir), "creating or starting the staging cluster", async () => {
        const opened = await ensureCluster(this.clusterOptions);
        // Under the lock the supervisor takes to stop an idle cluster: it sees this opening, and does not stop it now.
        markClusterOpened(opened.dir, this.idleStopMs, opened.serverUser.name);
        const superuser = opened.adminTarget().user;
        writeFileSync(join(opened.dataDir, "pg_hba.conf"), hbaConf(superuser));
        await withClient(opened.adminTarget(), { step: "up" }, async (c) => {
          // Nobody but the superuser connects to the maintenance databases.
          await query(c, "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC");
          await query(c, "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC");
          await query(c, `DO $$ BEGIN CREATE ROLE ${quoteIdent(AGENTS_GROUP)} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
          await query(c, "SELECT pg_reload_conf()");
        });
        return opened;
      });
      this.proxyPort = await ensureSupervisor(cluster.dir, this.sessionsDir);
      this.cluster = cluster;
    }
    return this.cluster;
  }

  async checkAvailable(): Promise<void> {
    await this.ensureCluster();
  }

  /** Restores the snapshot into its template database unless that exists already; returns the template's name. */
  async ensureTemplate(snapshot: ProvisionRequest["snapshot"], onProgress?: ProvisionRequest["onProgress"]): Promise<string> {
    const cluster = await this.ensureCluster();
    const name = templateName(snapshot.manifest.id);
    const loading = `${name}_loading`;
    return withClient(cluster.adminTarget(), { step: "up" }, async (c) => {
      // The lock below dies with this connection; should this process be killed in the middle of a statement,
      // the server notices within a second and ends it (not only when the statement is done), so a killed
      // `airlock up` leaves no stale lock that would block every later one.
      await query(c, "SET client_connection_check_interval = 1000").catch(() => undefined);
      // Two sessions starting at once restore a snapshot only once.
      await query(c, "SELECT pg_advisory_lock(hashtext($1))", [name]);
      try {
        // Holding the lock, nobody is restoring this snapshot: a `…_loading` database is what a killed
        // `airlock up` left, perhaps with connections still open (its restore's, until the server notices).
        await dropLoading(c, loading);
        if (await databaseExists(c, name)) {
          await finishTemplate(c, name);
          return name;
        }
        await query(c, `CREATE DATABASE ${quoteIdent(loading)}`);
        try {
          await restoreSnapshot({
            target: cluster.adminTarget(loading),
            dir: snapshot.dir,
            manifest: snapshot.manifest,
            ...(onProgress === undefined ? {} : { onProgress: (p) => onProgress({ phase: "restore", into: "template", ...p }) }),
          });
          const expected = readSnapshotCatalog(snapshot.dir, snapshot.manifest);
          if (expected !== null) {
            onProgress?.({ phase: "check" });
            await withClient(cluster.adminTarget(loading), { step: "up" }, (lc) =>
              checkRestoredCatalog(lc, expected, snapshot.manifest.catalog?.owners ?? [], snapshot.manifest.id),
            );
          }
        } catch (e) {
          await dropLoading(c, loading).catch(() => undefined);
          throw e;
        }
        // Renamed only once complete: a template database is always a whole snapshot.
        await query(c, `ALTER DATABASE ${quoteIdent(loading)} RENAME TO ${quoteIdent(name)}`);
        await finishTemplate(c, name);
        return name;
      } finally {
        await query(c, "SELECT pg_advisory_unlock(hashtext($1))", [name]).catch(() => undefined);
      }
    });
  }

  async provision(request: ProvisionRequest): Promise<Provisioned> {
    const cluster = await this.ensureCluster();
    const template = await this.ensureTemplate(request.snapshot, request.onProgress);
    request.onProgress?.({ phase: "copy" });
    const names = sessionObjectNames(request.sessionId);
    const password = randomBytes(18).toString("base64url");
    let diskQuotaBytes = request.limits.diskQuotaBytes;
    try {
      await withClient(cluster.adminTarget(), { step: "up" }, async (c) => {
        for (const db of [names.base, names.work]) {
          if (await databaseExists(c, db)) {
            throw new AirlockError("AIRLOCK_SESSION_EXISTS", `the staging database ${db} exists already`, {
              hint: "choose another session name, or `airlock down` the old one",
            });
          }
        }
        await this.checkCapacity(c, request.limits.connectionLimit);
        // By default a session may grow its work database to 4× the snapshot's size, and at least to 1 GB.
        if (diskQuotaBytes === undefined) {
          const r = await query<{ bytes: string }>(c, "SELECT pg_database_size($1)::text AS bytes", [template]);
          diskQuotaBytes = Math.max(1024 ** 3, 4 * Number(r.rows[0]!.bytes));
        }
        // FILE_COPY copies the template's files instead of WAL-logging every block: three times
        // faster for a large snapshot, and its checkpoint is cheap on a cluster without fsync.
        const version = Number((await query<{ v: string }>(c, "SELECT current_setting('server_version_num') AS v")).rows[0]!.v);
        const strategy = version >= 150000 ? " STRATEGY = FILE_COPY" : "";
        // Both copies at once, on two connections: copying files is I/O, and the template only takes a share lock.
        await Promise.all([
          query(c, `CREATE DATABASE ${quoteIdent(names.base)} TEMPLATE ${quoteIdent(template)}${strategy}`),
          withClient(cluster.adminTarget(), { step: "up" }, (c2) =>
            query(c2, `CREATE DATABASE ${quoteIdent(names.work)} TEMPLATE ${quoteIdent(template)}${strategy}`),
          ),
        ]);
        for (const db of [names.base, names.work]) await query(c, `REVOKE CONNECT ON DATABASE ${quoteIdent(db)} FROM PUBLIC`);
        await this.createAgentRole(c, names.role, password, { ...request.limits, diskQuotaBytes: diskQuotaBytes! });
        await query(c, `GRANT CONNECT ON DATABASE ${quoteIdent(names.work)} TO ${quoteIdent(names.role)}`);
        await query(c, `ALTER DATABASE ${quoteIdent(names.work)} OWNER TO ${quoteIdent(names.role)}`);
      });
      // CREATE DATABASE … TEMPLATE does not copy ALTER DATABASE … SET: give both copies production's settings.
      const catalog = readSnapshotCatalog(request.snapshot.dir, request.snapshot.manifest);
      if (catalog !== null)
        for (const db of [names.base, names.work]) await withClient(cluster.adminTarget(db), { step: "up" }, (dc) => applyDatabaseSettings(dc, catalog));
      await handOver(cluster.adminTarget(names.work), names.role);
    } catch (e) {
      if (!(e instanceof AirlockError && e.code === "AIRLOCK_SESSION_EXISTS")) await this.destroy(request.sessionId).catch(() => undefined);
      throw e;
    }
    return {
      // The agent's only door is the supervisor's proxy.
      agent: { host: "127.0.0.1", port: this.proxyPort!, database: names.work, user: names.role, password },
      backendState: {
        cluster: cluster.dir,
        template,
        base: names.base,
        work: names.work,
        role: names.role,
        connectionLimit: request.limits.connectionLimit,
        statementTimeoutMs: request.limits.statementTimeoutMs,
        diskQuotaBytes: diskQuotaBytes!,
      },
    };
  }

  /** Refuses a session whose connections would not fit beside the others' (sessions must never starve each other). */
  private async checkCapacity(c: pg.ClientBase, wanted: number): Promise<void> {
    const max = Number((await query<{ v: string }>(c, "SELECT current_setting('max_connections') AS v")).rows[0]!.v);
    const reserved = Number((await query<{ v: string }>(c, "SELECT current_setting('superuser_reserved_connections') AS v")).rows[0]!.v);
    const taken = await query<{ n: string }>(
      c,
      "SELECT coalesce(sum(rolconnlimit), 0)::text AS n FROM pg_roles WHERE pg_has_role(oid, $1, 'MEMBER') AND oid <> $1::regrole AND rolcanlogin",
      [AGENTS_GROUP],
    );
    const room = max - reserved - RESERVED_CONNECTIONS - Number(taken.rows[0]!.n);
    if (wanted > room) {
      throw new AirlockError(
        "AIRLOCK_STAGING_FULL",
        `the staging cluster has room for ${Math.max(0, room)} more agent connections, and a session takes ${wanted}`,
        {
          hint: "end a session (`airlock down`), lower staging.connectionLimit, or raise local.maxConnections (applies to a new cluster)",
        },
      );
    }
  }

  private async createAgentRole(c: pg.ClientBase, role: string, password: string, limits: AgentLimits & { readonly diskQuotaBytes: number }): Promise<void> {
    // The statement carries the password: the cluster never logs statements (log_statement = none).
    await query(
      c,
      `CREATE ROLE ${quoteIdent(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${Math.trunc(limits.connectionLimit)} IN ROLE ${quoteIdent(AGENTS_GROUP)} PASSWORD ${quoteLiteral(password)}`,
    );
    // temp_file_limit only a superuser may change: the agent cannot lift it. The supervisor enforces the rest.
    for (const setting of imposedAgentSettings(limits)) {
      const at = setting.indexOf("=");
      await query(c, `ALTER ROLE ${quoteIdent(role)} SET ${setting.slice(0, at)} = ${setting.slice(at + 1)}`);
    }
  }

  async adminTarget(sessionId: string, _state: Provisioned["backendState"], which: "base" | "work"): Promise<PgTarget> {
    const cluster = await this.ensureCluster();
    return cluster.adminTarget(sessionObjectNames(sessionId)[which]);
  }

  /**
   * Destroys whatever of a session exists, by its id alone (the names follow from it): a complete session,
   * or what an `airlock up` killed half-way left (no record needed).
   */
  async destroy(sessionId: string): Promise<void> {
    const cluster = await this.ensureCluster();
    const names = sessionObjectNames(sessionId);
    await withClient(cluster.adminTarget(), { step: "down" }, async (c) => {
      // Keep the agent from reconnecting while its databases go away.
      await query(c, `SELECT 1 FROM pg_roles WHERE rolname = $1`, [names.role]).then(async (r) => {
        if (r.rowCount === 1) await query(c, `ALTER ROLE ${quoteIdent(names.role)} NOLOGIN`);
      });
      // A killed `airlock up` may have left its CREATE DATABASE running in the server (the server notices the
      // client is gone only when the copy ends): ended first, or it would commit a database after the drops.
      await endCreations(c, [names.base, names.work]);
      for (const db of [names.work, names.base]) await query(c, `DROP DATABASE IF EXISTS ${quoteIdent(db)} WITH (FORCE)`);
      await query(c, `DROP ROLE IF EXISTS ${quoteIdent(names.role)}`);
    });
  }

  /**
   * Drops every `…_loading` database no `airlock up` is restoring (one that holds the snapshot's lock is left
   * alone): what a killed `up` left of a template restore. Returns the dropped names.
   */
  async dropAbandonedTemplateLoads(): Promise<string[]> {
    const cluster = await this.ensureCluster();
    return withClient(cluster.adminTarget(), { step: "down" }, async (c) => {
      const found = await query<{ datname: string }>(c, String.raw`SELECT datname FROM pg_database WHERE datname LIKE 'airlock\_tpl\_%\_loading' ORDER BY 1`);
      const dropped: string[] = [];
      for (const { datname } of found.rows) {
        const template = datname.slice(0, -"_loading".length);
        if ((await query<{ free: boolean }>(c, "SELECT pg_try_advisory_lock(hashtext($1)) AS free", [template])).rows[0]!.free !== true) continue;
        try {
          await dropLoading(c, datname);
          dropped.push(datname);
        } finally {
          await query(c, "SELECT pg_advisory_unlock(hashtext($1))", [template]).catch(() => undefined);
        }
      }
      return dropped;
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
