/**
 * Airlock's own PostgreSQL 15 image for the docker backend, built on this
 * machine where no registry can be reached: debootstrap installs the recipe
 * (image-recipe.ts) into a temporary root file system (image-rootfs.ts), which
 * is streamed as a tar into the engine's import (the Engine API, as
 * `docker import` does). The tag is the recipe's hash, so an image already
 * built from the same recipe is reused without running debootstrap.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import type Docker from "dockerode";
import { AirlockError } from "../errors.ts";
import { dockerClient, dockerEndpoint, probeDocker } from "./docker-engine.ts";
import {
  DEFAULT_MIRROR,
  IMAGE_LABEL,
  IMAGE_RECIPE,
  POSTGRES_VERSION_LABEL,
  RECIPE_LABEL,
  type ImageRecipe,
  imageTag,
  importChanges,
  recipeHash,
} from "./image-recipe.ts";
import { checkRoot, debootstrap, findDebootstrap, makeBuildDir, mirrorForDisplay, removeBuildDir, shrinkRoot } from "./image-rootfs.ts";

export { DEFAULT_MIRROR, IMAGE_LABEL, IMAGE_RECIPE, RECIPE_LABEL, type ImageRecipe, defaultImageTag, imageTag, recipeHash } from "./image-recipe.ts";

/** A step of a build: a phase starts (no detail), or reports a line of its progress. */
export interface ImageBuildProgress {
  readonly phase: "debootstrap" | "shrink" | "import";
  readonly detail?: string;
}

/** How to build. */
export interface BuildImageOptions {
  /** The Debian mirror debootstrap downloads from (default: http://deb.debian.org/debian). */
  readonly mirror?: string;
  /** Default: the recipe `airlock image build` uses. */
  readonly recipe?: ImageRecipe;
  /** Where DOCKER_HOST and PATH come from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Default: a client of the engine at DOCKER_HOST. */
  readonly docker?: Docker;
  readonly onProgress?: (p: ImageBuildProgress) => void;
}

/** What a build left: the image, and whether it was there already. */
export interface BuiltImage {
  readonly tag: string;
  readonly id: string;
  /** True when an image of this recipe existed and nothing was built. */
  readonly reused: boolean;
  readonly recipeHash: string;
  /** The PostgreSQL server version in the image (e.g. "15.14 (Debian 15.14-0+deb12u1)"). */
  readonly postgres: string | null;
  readonly sizeBytes: number;
  readonly seconds: number;
}

/** One of Airlock's images in the engine (one entry per tag). */
export interface AirlockImage {
  /** `repository:tag`, or null for an image whose tag moved to a newer one. */
  readonly tag: string | null;
  readonly id: string;
  /** ISO 8601. */
  readonly created: string;
  readonly sizeBytes: number;
  readonly recipeHash: string | null;
  readonly postgres: string | null;
  /** True when it is the image of the current recipe (the docker backend's default). */
  readonly current: boolean;
}

/** The engine at DOCKER_HOST, once it answers; AIRLOCK_DOCKER_UNAVAILABLE otherwise. */
export async function requireDockerEngine(env: NodeJS.ProcessEnv = process.env, docker: Docker = dockerClient(env)): Promise<Docker> {
  const hint =
    'start the Docker engine (systemctl start docker; in a checkout, as root: eval "$(tools/dockerd.sh start /tmp/airlock-docker)") or set DOCKER_HOST to its socket';
  const endpoint = dockerEndpoint(env);
  const problem = await probeDocker(endpoint);
  if (problem !== null) throw new AirlockError("AIRLOCK_DOCKER_UNAVAILABLE", problem, { hint });
  try {
    await docker.ping();
  } catch (e) {
    throw new AirlockError("AIRLOCK_DOCKER_UNAVAILABLE", `the Docker engine does not answer its API: ${(e as Error).message}`, { hint, cause: e });
  }
  return docker;
}

/** The image under a tag when it was built from this recipe, else undefined (absent, or a tag someone moved). */
async function imageOfRecipe(docker: Docker, tag: string, hash: string): Promise<Docker.ImageInspectInfo | undefined> {
  try {
    const info = await docker.getImage(tag).inspect();
    return info.Config?.Labels?.[RECIPE_LABEL] === hash ? info : undefined;
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode === 404) return undefined;
    throw new AirlockError("AIRLOCK_DOCKER_UNAVAILABLE", `the Docker engine could not inspect ${tag}: ${(e as Error).message}`, { cause: e });
  }
}

/** The mirror as debootstrap takes it: an http(s) URL. */
function checkedMirror(mirror: string): string {
  let url: URL;
  try {
    url = new URL(mirror);
  } catch {
    throw new AirlockError("AIRLOCK_BAD_URL", `the mirror is not a URL: ${mirrorForDisplay(mirror)}`, {
      hint: `give an http(s) URL of a Debian mirror, like ${DEFAULT_MIRROR}`,
    });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new AirlockError("AIRLOCK_BAD_URL", `the mirror must be an http or https URL, not ${url.protocol}`, { hint: `like ${DEFAULT_MIRROR}` });
  }
  return mirror;
}

/**
 * Builds the image of a recipe unless the engine has it already (then `reused`).
 * Building needs root (debootstrap) and takes about a minute; the temporary
 * root file system is removed whether the build succeeds or fails.
 */
export async function buildImage(options: BuildImageOptions = {}): Promise<BuiltImage> {
  const started = Date.now();
  const recipe = options.recipe ?? IMAGE_RECIPE;
  const env = options.env ?? process.env;
  const mirror = checkedMirror(options.mirror ?? DEFAULT_MIRROR);
  const tag = imageTag(recipe);
  const hash = recipeHash(recipe);
  const docker = await requireDockerEngine(env, options.docker ?? dockerClient(env));
  const result = (info: Docker.ImageInspectInfo, reused: boolean): BuiltImage => ({
    tag,
    id: info.Id,
    reused,
    recipeHash: hash,
    postgres: info.Config?.Labels?.[POSTGRES_VERSION_LABEL] ?? null,
    sizeBytes: info.Size,
    seconds: (Date.now() - started) / 1000,
  });
  const existing = await imageOfRecipe(docker, tag, hash);
  if (existing !== undefined) return result(existing, true);

  if (process.getuid?.() !== 0) {
    throw new AirlockError("AIRLOCK_IMAGE_NEEDS_ROOT", `building ${tag} needs root: debootstrap installs Debian's packages into a new root file system`, {
      hint: "run `airlock image build` as root (sudo), or set staging.image to an image with the PostgreSQL 15 server such as postgres:15.10-bookworm",
    });
  }
  const executable = findDebootstrap(env);
  if (executable === undefined) {
    throw new AirlockError("AIRLOCK_IMAGE_NO_DEBOOTSTRAP", `building ${tag} needs debootstrap, and it is not installed`, {
      hint: "apt-get install debootstrap (Debian/Ubuntu), or set staging.image to an image with the PostgreSQL 15 server such as postgres:15.10-bookworm",
    });
  }
  const dir = makeBuildDir();
  let failure: unknown;
  try {
    const root = join(dir, "root");
    options.onProgress?.({ phase: "debootstrap" });
    await debootstrap(executable, recipe, root, mirror, env, (line) => options.onProgress?.({ phase: "debootstrap", detail: line }));
    options.onProgress?.({ phase: "shrink" });
    shrinkRoot(root, recipe);
    const postgres = checkRoot(root, recipe);
    options.onProgress?.({ phase: "import" });
    await importRoot(docker, root, tag, importChanges(recipe, postgres));
    const built = await imageOfRecipe(docker, tag, hash);
    if (built === undefined) throw new AirlockError("AIRLOCK_IMAGE_BUILD_FAILED", `the engine imported the image but has no ${tag} with recipe ${hash}`);
    return result(built, false);
  } catch (e) {
    failure = e;
    throw e;
  } finally {
    try {
      removeBuildDir(dir);
    } catch (e) {
      // A failed build reports why it failed; the directory left behind is secondary then.
      if (failure === undefined) throw e;
    }
  }
}

/** Streams a root file system as a tar into the engine's import (POST /images/create?fromSrc=-) under a tag. */
async function importRoot(docker: Docker, root: string, tag: string, changes: readonly string[]): Promise<void> {
  const [repo, version] = tag.split(":") as [string, string];
  // The engine gives each container its own /dev, /proc and /sys: their contents stay out.
  const tar = spawn("tar", ["-C", root, "--numeric-owner", "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let tarErrors = "";
  tar.stderr.on("data", (chunk: Buffer) => (tarErrors = (tarErrors + chunk.toString("utf8")).slice(-2000)));
  const tarDone = new Promise<number | null>((done) => {
    tar.once("error", () => done(null));
    tar.once("close", (code) => done(code));
  });
  let problem: string | undefined;
  try {
    const stream = await docker.importImage(tar.stdout, { repo, tag: version, changes: [...changes] });
    problem = await engineStreamError(stream);
  } catch (e) {
    problem = (e as Error).message;
  }
  // An engine that gave up stops reading: tar would wait on a full pipe for ever.
  if (problem !== undefined) tar.kill();
  const tarCode = await tarDone;
  if (problem === undefined && tarCode !== 0) {
    // The engine may have taken a truncated tar as a whole image: it must not stay under the tag.
    await docker
      .getImage(tag)
      .remove({ force: true })
      .catch(() => undefined);
    problem = `tar of the root file system failed (${tarCode === null ? "could not start" : `exit ${tarCode}`}): ${tarErrors.trim()}`;
  }
  if (problem !== undefined) {
    throw new AirlockError("AIRLOCK_IMAGE_BUILD_FAILED", `importing ${tag} into the Docker engine failed: ${problem}`, {
      hint: "check the engine's free space (docker system df) and its log",
    });
  }
}

/** Reads an engine progress stream (JSON lines) to its end; the first error it reports, if any. */
async function engineStreamError(stream: NodeJS.ReadableStream): Promise<string | undefined> {
  let text = "";
  for await (const chunk of stream) text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    try {
      const message = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
      if (message.error !== undefined) return message.errorDetail?.message ?? message.error;
    } catch {
      return `the engine answered something that is not JSON: ${line.slice(0, 200)}`;
    }
  }
  return undefined;
}

/** Airlock's images in the engine (by the airlock.image label): one entry per tag, newest first. */
export async function listImages(docker: Docker): Promise<AirlockImage[]> {
  const current = imageTag();
  const images = await docker.listImages({ filters: { label: [IMAGE_LABEL] } });
  return images
    .sort((a, b) => b.Created - a.Created)
    .flatMap((image) => {
      const tags = (image.RepoTags ?? []).filter((t) => t !== "<none>:<none>");
      const labels = image.Labels ?? {};
      return (tags.length > 0 ? tags : [null]).map((tag) => ({
        tag,
        id: image.Id,
        created: new Date(image.Created * 1000).toISOString(),
        sizeBytes: image.Size,
        recipeHash: labels[RECIPE_LABEL] ?? null,
        postgres: labels[POSTGRES_VERSION_LABEL] ?? null,
        current: tag === current && labels[RECIPE_LABEL] === recipeHash(),
      }));
    });
}
