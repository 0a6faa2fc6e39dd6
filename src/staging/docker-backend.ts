/**
 * The `docker` staging backend: one container per session, straight on a
 * Docker engine through its API, from the same spec the Pulumi program
 * declares (container-spec.ts). The container restores the snapshot itself
 * (container-entrypoint.ts); this backend waits until it is healthy, then
 * proves `base` holds production's schema, as the local backend does for its
 * templates. The superuser's password is only in the container's
 * environment (read back through the engine); the agent's is in the session
 * record, as for every backend.
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import type Docker from "dockerode";
import { checkRestoredCatalog } from "../catalog/restore.ts";
import { AirlockError } from "../errors.ts";
import { findFreePort } from "../pg/cluster-config.ts";
import { type PgTarget, makeTarget, query, withClient } from "../pg/connect.ts";
import { redactText } from "../pg/redact.ts";
import { readSnapshotCatalog } from "../snapshot/store.ts";
import type { Provisioned, ProvisionRequest, StagingBackend } from "./backend.ts";
import { AGENT_ROLE, BASE_DB, SUPERUSER, WORK_DB } from "./container-names.ts";
import { SnapshotFileError, readSnapshotForRestore } from "./container-restore.ts";
import { ADMIN_PASSWORD_ENV, LABELS, sessionContainerSpec } from "./container-spec.ts";
import { type ContainerState, containerState, createOptions, envOf, networkOptions, uploadsTar } from "./docker-container.ts";
import { DISK_QUOTA_FILE } from "./container-entrypoint.ts";
import { type ContainerSettings, sessionNetworkMode } from "./container-settings.ts";
import { dockerClient, dockerEndpoint, probeDocker } from "./docker-engine.ts";

/** Options of the docker backend: the `staging.docker` config section, and a ready timeout. */
export interface DockerBackendOptions extends ContainerSettings {
  /** How long to wait for a restored, healthy container, in seconds. */
  readonly readyTimeoutSeconds?: number;
  readonly env?: NodeJS.ProcessEnv;
}

function isNotFound(e: unknown): boolean {
  return (e as { statusCode?: number }).statusCode === 404;
}

/** Sessions as containers on a Docker engine. */
export class DockerBackend implements StagingBackend {
  readonly kind = "docker" as const;
  private readonly docker: Docker;
  private readonly env: NodeJS.ProcessEnv;

  constructor(private readonly options: DockerBackendOptions) {
    this.env = options.env ?? process.env;
    this.docker = dockerClient(this.env);
  }

  async checkAvailable(): Promise<void> {
    const problem = await probeDocker(dockerEndpoint(this.env));
    if (problem !== null) {
      throw new AirlockError("AIRLOCK_DOCKER_UNAVAILABLE", `the docker staging backend cannot run here: ${problem}`, {
        hint: "start a Docker engine, or set DOCKER_HOST to one that runs (unix:///path/to/docker.sock); or use the local backend (`--backend local`)",
      });
    }
    try {
      await this.docker.getImage(this.options.image).inspect();
    } catch (e) {
      if (!isNotFound(e)) throw e;
      throw new AirlockError("AIRLOCK_IMAGE_MISSING", `the Docker engine has no image ${this.options.image}`, {
        hint: "build it with `airlock image build` (no registry needed), or pull an image with the PostgreSQL 15 server and set staging.docker.image to it",
      });
    }
  }

  async provision(request: ProvisionRequest): Promise<Provisioned> {
    const { manifest, dir } = request.snapshot;
    let restore: ReturnType<typeof readSnapshotForRestore>;
    try {
      restore = readSnapshotForRestore(resolve(dir), manifest.id);
    } catch (e) {
      if (e instanceof SnapshotFileError) {
        throw new AirlockError("AIRLOCK_SNAPSHOT_CORRUPT", e.message, { hint: `check it with \`airlock snapshot verify ${manifest.id}\`` });
      }
      throw e;
    }
    const network = await sessionNetworkMode(this.docker, this.options.network);
    const spec = sessionContainerSpec({
      session: request.sessionId,
      snapshotDir: resolve(dir),
      image: this.options.image,
      memoryMb: this.options.memoryMb,
      cpus: this.options.cpus,
      connectionLimit: request.limits.connectionLimit,
      // As the local backend sets it (no unit: ms), so the diff knows it for the setting Airlock imposed.
      statementTimeout: String(Math.trunc(request.limits.statementTimeoutMs)),
      diskQuotaBytes: request.limits.diskQuotaBytes,
      network,
      port: network === "host" ? await findFreePort() : 0,
      expiresAt: request.expiresAt ?? "never",
      project: this.options.project,
      readyTimeoutSeconds: this.options.readyTimeoutSeconds ?? 600,
      restore,
    });
    const adminPassword = randomBytes(24).toString("base64url");
    const agentPassword = randomBytes(24).toString("base64url");
    try {
      request.onProgress?.({ phase: "container" });
      if (network === "bridge") await this.docker.createNetwork(networkOptions(spec));
      const container = await this.docker.createContainer(createOptions(spec, [adminPassword, agentPassword]));
      await container.putArchive(await uploadsTar(spec.uploads), { path: "/" });
      await container.start();
      // The container's entrypoint restores the snapshot; its health check passes once it is done.
      request.onProgress?.({ phase: "restore", into: "container" });
      const port = await this.waitHealthy(container, spec.healthcheck.startPeriodSeconds, [adminPassword, agentPassword]);
      const expected = readSnapshotCatalog(dir, manifest);
      const admin = makeTarget({ host: "127.0.0.1", port, database: BASE_DB, user: SUPERUSER, password: adminPassword });
      const diskQuotaBytes = await withClient(admin, { step: "up" }, async (c) => {
        if (expected !== null) {
          request.onProgress?.({ phase: "check" });
          await checkRestoredCatalog(c, expected, manifest.catalog?.owners ?? [], manifest.id);
        }
        // The quota the container settled on (measured after its restore unless one was configured), for `ls` and the diff.
        return Number((await query<{ q: string }>(c, "SELECT trim(pg_read_file($1)) AS q", [DISK_QUOTA_FILE])).rows[0]!.q);
      });
      return {
        agent: { host: "127.0.0.1", port, database: WORK_DB, user: AGENT_ROLE, password: agentPassword },
        backendState: { container: spec.name, network, port, image: this.options.image, diskQuotaBytes, connectionLimit: request.limits.connectionLimit },
      };
    } catch (e) {
      await this.destroy(request.sessionId, {}).catch(() => undefined);
      throw e;
    }
  }

  /** Waits until the container's health check passes; returns the host port. Fails with the container's last log lines. */
  private async waitHealthy(container: Docker.Container, timeoutSeconds: number, secrets: readonly string[]): Promise<number> {
    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const info = await container.inspect();
      const { state, detail } = containerState(info);
      if (state === "ready") return this.hostPort(info);
      // A restart while starting means the entrypoint failed: the engine would retry it forever.
      if (state === "dead" || state === "unhealthy" || state === "restarting" || info.RestartCount > 0 || Date.now() > deadline) {
        const logs = (await container.logs({ stdout: true, stderr: true, tail: 30 })).toString("utf8");
        // The engine frames each log line with an 8-byte header when there is no TTY.
        const text = redactText(logs.replace(/[\0-\x08\x0e-\x1f]/g, ""), secrets);
        throw new AirlockError(
          "AIRLOCK_CONTAINER_FAILED",
          `the session container ${info.Name.replace(/^\//, "")} did not become ready: ${detail ?? `still ${state} after ${timeoutSeconds} s`}\n${text}`,
          { hint: "the log lines above are the container's; a checksum mismatch means the snapshot is damaged (`airlock snapshot verify`)" },
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  private hostPort(info: Docker.ContainerInspectInfo): number {
    if (info.HostConfig.NetworkMode === "host") return Number(envOf(info, "AIRLOCK_PORT"));
    const bindings = Object.values(info.NetworkSettings.Ports ?? {})[0];
    const port = Number(bindings?.find((b) => b.HostIp === "127.0.0.1")?.HostPort ?? bindings?.[0]?.HostPort);
    if (!Number.isInteger(port) || port <= 0) throw new AirlockError("AIRLOCK_CONTAINER_FAILED", `the session container ${info.Name} has no published port`);
    return port;
  }

  private async inspect(sessionId: string): Promise<Docker.ContainerInspectInfo | undefined> {
    try {
      return await this.docker.getContainer(`airlock-${sessionId}`).inspect();
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async adminTarget(sessionId: string, _state: Provisioned["backendState"], which: "base" | "work"): Promise<PgTarget> {
    const info = await this.inspect(sessionId);
    const { state, detail } = containerState(info);
    if (info === undefined || state !== "ready") {
      throw new AirlockError("AIRLOCK_SESSION_DEAD", `session ${sessionId} is ${state}: ${detail ?? "its server is not ready"}`, {
        hint: `keep what you can with \`airlock diff ${sessionId}\` once it runs again, or \`airlock down ${sessionId}\``,
      });
    }
    const password = envOf(info, ADMIN_PASSWORD_ENV);
    if (password === undefined) throw new AirlockError("AIRLOCK_CONTAINER_FAILED", `the container of session ${sessionId} has no superuser password`);
    return makeTarget({ host: "127.0.0.1", port: this.hostPort(info), database: which === "base" ? BASE_DB : WORK_DB, user: SUPERUSER, password });
  }

  /** What `airlock ls` shows of a session's container. */
  async state(sessionId: string): Promise<{ state: ContainerState; detail: string | null }> {
    return containerState(await this.inspect(sessionId));
  }

  async destroy(sessionId: string, _state: Provisioned["backendState"]): Promise<void> {
    const name = `airlock-${sessionId}`;
    try {
      await this.docker.getContainer(name).remove({ force: true, v: true });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    try {
      await this.docker.getNetwork(name).remove();
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /** Containers (and networks) of this project whose expiry label has passed, though no session record names them; returns their sessions. */
  async removeExpiredOrphans(known: ReadonlySet<string>, now = new Date()): Promise<string[]> {
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${this.options.project}`] } });
    const removed: string[] = [];
    for (const c of containers) {
      const session = c.Labels[LABELS.session];
      const expires = c.Labels[LABELS.expires];
      if (session === undefined || known.has(session) || expires === undefined || expires === "never" || Date.parse(expires) > now.getTime()) continue;
      await this.destroy(session, {});
      removed.push(session);
    }
    return removed;
  }
}
