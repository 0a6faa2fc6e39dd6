/**
 * What a session container gets besides its session: the image, network mode,
 * memory, CPUs and project label from the `staging.docker` config section, and
 * the disk quota when none is configured. The docker backend and the Pulumi
 * backend take the same settings, so that `--backend docker` and
 * `--backend pulumi` start the same container for a project.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import type Docker from "dockerode";
import type { ProvisionRequest } from "./backend.ts";
import type { NetworkMode } from "./container-spec.ts";

/** The container settings of a project. */
export interface ContainerSettings {
  /** The image with the PostgreSQL server binaries. */
  readonly image: string;
  /** `auto`: bridge when the engine has a bridge network, else host. */
  readonly network: NetworkMode | "auto";
  readonly memoryMb: number;
  readonly cpus: number;
  /** Which project the sessions belong to (a label; gc removes only its own). */
  readonly project: string;
}

const GiB = 1024 ** 3;

/**
 * The session's disk quota: the configured one, else four times the restored size, estimated from the compressed data
 * as ten times it (the local backend measures it after its restore; a container restores only once started), at least 1 GiB.
 */
export function containerDiskQuota(request: Pick<ProvisionRequest, "snapshot" | "limits">): number {
  if (request.limits.diskQuotaBytes !== undefined) return request.limits.diskQuotaBytes;
  const { manifest, dir } = request.snapshot;
  const compressed = manifest.tables.reduce((n, t) => n + statSync(join(dir, t.file)).size, 0);
  return Math.max(GiB, 4 * 10 * compressed);
}

/** The network mode sessions get: the configured one, or for `auto` bridge when the engine has a bridge network, else host. */
export async function sessionNetworkMode(docker: Docker, configured: NetworkMode | "auto"): Promise<NetworkMode> {
  if (configured !== "auto") return configured;
  const networks = await docker.listNetworks({ filters: { driver: ["bridge"] } });
  return networks.some((n) => n.Name === "bridge") ? "bridge" : "host";
}
