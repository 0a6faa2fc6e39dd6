/**
 * What a session container gets besides its session: the image, network mode,
 * memory, CPUs and project label from the `staging.docker` config section, and
 * the network mode `auto` decides on. The docker backend and the Pulumi
 * backend take the same settings, so that `--backend docker` and
 * `--backend pulumi` start the same container for a project. (Without a
 * configured disk quota, the container measures its own after the restore.)
 */
import type Docker from "dockerode";
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

/** The network mode sessions get: the configured one, or for `auto` bridge when the engine has a bridge network, else host. */
export async function sessionNetworkMode(docker: Docker, configured: NetworkMode | "auto"): Promise<NetworkMode> {
  if (configured !== "auto") return configured;
  const networks = await docker.listNetworks({ filters: { driver: ["bridge"] } });
  return networks.some((n) => n.Name === "bridge") ? "bridge" : "host";
}
