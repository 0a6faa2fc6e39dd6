/**
 * The docker backend's row: `airlock up --backend docker`, where each session
 * is a container that restores the snapshot itself, against what a user
 * would otherwise do: `pg_restore` of the `pg_dump -Fc` of production into a
 * fresh database on a plain local cluster, in the same run on the same data.
 * The row is skipped, with the reason, when no Docker engine answers or the
 * session image is absent. Each session is destroyed (`airlock down`) right
 * after its run, whatever happened; then every container and network of the
 * bench's project is removed, and the next run removes any a killed run left.
 */
import { execFileSync } from "node:child_process";
import type { Project } from "../src/config/load.ts";
import { AirlockError } from "../src/errors.ts";
import type { LocalCluster } from "../src/pg/cluster.ts";
import { withClient } from "../src/pg/connect.ts";
import { LABELS } from "../src/staging/container-spec.ts";
import { dockerClient, dockerEndpoint, probeDocker } from "../src/staging/docker-engine.ts";
import { defaultImageTag } from "../src/staging/image-recipe.ts";
import { destroySession, projectLabel } from "../src/staging/sessions.ts";
import { type Row, median, step, timed } from "./common.ts";

/** The engine answers and has the image; or why the row cannot be measured here. */
export type DockerForBench = { readonly ok: true; readonly image: string } | { readonly ok: false; readonly reason: string };

const isNotFound = (e: unknown) => (e as { statusCode?: number }).statusCode === 404;

/** Probes the engine (DOCKER_HOST) and the session image (AIRLOCK_BENCH_IMAGE, else the one `airlock image build` makes). */
export async function dockerForBench(): Promise<DockerForBench> {
  const problem = await probeDocker(dockerEndpoint());
  if (problem !== null) return { ok: false, reason: `no Docker engine: ${problem}` };
  const image = process.env.AIRLOCK_BENCH_IMAGE || defaultImageTag();
  try {
    await dockerClient().getImage(image).inspect();
  } catch (e) {
    if (isNotFound(e)) return { ok: false, reason: `the Docker engine has no image ${image} (\`airlock image build\` makes it; or set AIRLOCK_BENCH_IMAGE)` };
    return { ok: false, reason: `the Docker engine did not answer about image ${image}: ${(e as Error).message}` };
  }
  return { ok: true, image };
}

/** Removes every container and network carrying the project's label; returns the containers' names. */
export async function removeProjectContainers(project: Project): Promise<string[]> {
  if ((await probeDocker(dockerEndpoint())) !== null) return [];
  const docker = dockerClient();
  const filters = { label: [`${LABELS.project}=${projectLabel(project)}`] };
  const removed: string[] = [];
  const ignoreGone = (e: unknown) => {
    if (!isNotFound(e)) throw e;
  };
  for (const c of await docker.listContainers({ all: true, filters })) {
    await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(ignoreGone);
    removed.push(c.Names[0]?.replace(/^\//, "") ?? c.Id);
  }
  for (const n of await docker.listNetworks({ filters })) await docker.getNetwork(n.Id).remove().catch(ignoreGone);
  return removed;
}

/** `airlock down`: a session whose `up` failed has no record left (createSession removes it, and its container). */
async function down(project: Project, name: string): Promise<void> {
  try {
    await destroySession(project, name);
  } catch (e) {
    if (!(e instanceof AirlockError && e.code === "AIRLOCK_SESSION_NOT_FOUND")) throw e;
  }
}

export interface DockerUpInput {
  readonly project: Project;
  readonly projectDir: string;
  readonly snapshot: string;
  readonly runs: number;
  /** The plain local cluster the baseline restores into (the bench's production cluster: no Airlock in front of it). */
  readonly cluster: LocalCluster;
  /** The `pg_dump -Fc` of production. */
  readonly dumpFile: string;
}

export async function dockerUpRow(input: DockerUpInput): Promise<Row> {
  const { project, cluster } = input;
  const docker = project.config.staging.docker;
  // As many restore jobs as the container has CPUs (1 by default): both sides get the same parallelism.
  const jobs = Math.max(1, Math.round(docker.cpus));
  const memory = `${Math.round(docker.memory / 1024 ** 2)} MB`;
  const measured = `\`airlock up --backend docker\` to a connectable \`work\` (the container restores the snapshot; ${docker.cpus} CPU, ${memory})`;
  const baseline = `\`pg_restore -j ${jobs}\` into a fresh database on a plain local cluster`;
  const target = "≤ 2×";
  const available = await dockerForBench();
  if (!available.ok) {
    console.error(`docker up: skipped: ${available.reason}`);
    return { measured, airlockMs: 0, baseline, baselineMs: null, target, met: null, maxRssMb: 0, skipped: available.reason };
  }
  const leftovers = await removeProjectContainers(project);
  if (leftovers.length > 0) console.error(`docker up: removed ${leftovers.join(", ")}, left by an earlier run`);
  const restoreMs: number[] = [];
  const ups: Array<{ ms: number; maxRssMb: number }> = [];
  let failed = true;
  try {
    for (let i = 0; i < input.runs; i++) {
      const db = `docker_restore_${i}`;
      await withClient(cluster.adminTarget(), { step: "bench", searchPath: "public" }, (c) => c.query(`CREATE DATABASE ${db}`));
      const args = ["-j", String(jobs), "-h", cluster.socketDir, "-p", String(cluster.port), "-U", "airlock", "-d", db, input.dumpFile];
      restoreMs.push(
        timed(() => execFileSync(cluster.binaries.tool("pg_restore"), args, { env: { ...process.env, PGPASSWORD: cluster.adminTarget().password ?? "" } })),
      );
      await withClient(cluster.adminTarget(), { step: "bench", searchPath: "public" }, (c) => c.query(`DROP DATABASE ${db}`));
      const name = `bench-docker-${i}`;
      try {
        ups.push(step("up", { project: input.projectDir, snapshot: input.snapshot, name, backend: "docker", image: available.image }));
      } finally {
        await down(project, name);
      }
      console.error(`docker up run ${i + 1}: pg_restore -j ${jobs} ${restoreMs[i]!.toFixed(0)} ms, airlock up --backend docker ${ups[i]!.ms.toFixed(0)} ms`);
    }
    failed = false;
  } finally {
    const left = await removeProjectContainers(project);
    if (left.length > 0) {
      const message = `docker up: \`airlock down\` left ${left.join(", ")} behind (removed now)`;
      // After a failure that failure is the error to report; after a success, leaving a container is one.
      if (failed) console.error(message);
      else throw new Error(message);
    }
  }
  const upMs = median(ups.map((u) => u.ms));
  return {
    measured,
    airlockMs: upMs,
    baseline,
    baselineMs: median(restoreMs),
    target,
    met: upMs <= 2 * median(restoreMs),
    maxRssMb: Math.max(...ups.map((u) => u.maxRssMb)),
  };
}
