/**
 * The Docker engine the container tests run on (DOCKER_HOST, as `.ci/run`
 * starts it), and whether the session image is on it. Tests that need them
 * skip with the reason printed when they are not there.
 */
import type Docker from "dockerode";
import { dockerClient, dockerEndpoint, probeDocker } from "../../src/staging/docker-engine.ts";
import { defaultImageTag } from "../../src/staging/image-recipe.ts";

/** The engine and the image to use, or why the container tests cannot run here. */
export type DockerForTests = { readonly ok: true; readonly docker: Docker; readonly image: string } | { readonly ok: false; readonly reason: string };

/** Probes the engine and the image (AIRLOCK_TEST_IMAGE, else the one `airlock image build` makes). */
export async function dockerForTests(): Promise<DockerForTests> {
  const problem = await probeDocker(dockerEndpoint());
  if (problem !== null) return { ok: false, reason: `no Docker engine (${problem}); .ci/run starts one with tools/dockerd.sh` };
  const docker = dockerClient();
  const image = process.env.AIRLOCK_TEST_IMAGE ?? defaultImageTag();
  try {
    await docker.getImage(image).inspect();
  } catch {
    return { ok: false, reason: `the Docker engine has no image ${image}; \`airlock image build\` makes it` };
  }
  return { ok: true, docker, image };
}

/** Containers, networks and volumes carrying `label` (key or key=value). */
export async function labelled(docker: Docker, label: string): Promise<{ containers: string[]; networks: string[]; volumes: string[] }> {
  const filters = { label: [label] };
  const containers = (await docker.listContainers({ all: true, filters })).map((c) => c.Names[0] ?? c.Id);
  const networks = (await docker.listNetworks({ filters })).map((n) => n.Name);
  const volumes = ((await docker.listVolumes({ filters })).Volumes ?? []).map((v) => v.Name);
  return { containers, networks, volumes };
}
