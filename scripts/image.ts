/**
 * `airlock image build|ls`: the PostgreSQL 15 image the docker backend's
 * session containers run, built on this machine from Debian's packages where
 * no registry can be reached.
 */
import { type Command, InvalidArgumentError } from "commander";
import { DEFAULT_MIRROR, buildImage, listImages, requireDockerEngine } from "../src/staging/image.ts";
import { globalFlags } from "./context.ts";
import { progress, say, sayJson, table, warn } from "./output.ts";

/** An http(s) URL (the mirror). */
function httpUrl(value: string): string {
  try {
    if (/^https?:$/.test(new URL(value).protocol)) return value;
  } catch {
    // reported below
  }
  throw new InvalidArgumentError("expected an http or https URL");
}

/** Bytes as people read them. */
function megabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(0)} MB`;
}

/** Registers the command. */
export function registerImage(program: Command): void {
  const image = program
    .command("image")
    .description("build or list the PostgreSQL 15 image the docker backend's session containers run")
    .addHelpText(
      "after",
      `
The image is built locally from Debian's packages (debootstrap, as root) and
tagged after its recipe: the same recipe reuses the image already built.

Examples:
  sudo airlock image build
  airlock image ls`,
    );

  image
    .command("build")
    .description("build the image of the current recipe, or reuse it when the engine has it already")
    .option("--mirror <url>", `the Debian mirror debootstrap downloads from (default: ${DEFAULT_MIRROR})`, httpUrl)
    .addHelpText(
      "after",
      `
Needs root and debootstrap (apt-get install debootstrap), a Docker engine at
DOCKER_HOST, and the Debian mirror; takes about a minute. Without root, set
staging.image to a registry image with the PostgreSQL 15 server instead
(e.g. postgres:15.10-bookworm).

Examples:
  DOCKER_HOST=unix:///tmp/airlock-docker/docker.sock airlock image build
  airlock image build --mirror http://ftp.de.debian.org/debian --json`,
    )
    .action(async (opts: { mirror?: string }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const bar = progress(!json);
      const r = await buildImage({
        ...(opts.mirror === undefined ? {} : { mirror: opts.mirror }),
        onProgress: (p) => {
          if (json) return;
          if (p.detail !== undefined) return bar.update(`${p.phase}: ${p.detail}`);
          bar.done();
          warn(
            p.phase === "debootstrap"
              ? `debootstrap: installing Debian with PostgreSQL 15 into a temporary directory (about a minute)…`
              : p.phase === "shrink"
                ? "shrink: removing apt's lists and caches, documentation and Debian's own cluster…"
                : "import: streaming the root file system into the Docker engine…",
          );
        },
      });
      bar.done();
      if (json) return sayJson(r);
      say(
        r.reused
          ? `${r.tag} is there already (recipe ${r.recipeHash.slice(0, 12)}): reused`
          : `built ${r.tag} in ${r.seconds.toFixed(0)} s: PostgreSQL ${r.postgres ?? "?"}, ${megabytes(r.sizeBytes)}`,
      );
      say(`  the docker backend runs it by default; the id is ${r.id}`);
    });

  image
    .command("ls")
    .description("list Airlock's images in the Docker engine, with the recipe each was built from")
    .addHelpText("after", "\nThe current recipe's image is marked with *.\n\nExamples:\n  airlock image ls\n  airlock image ls --json")
    .action(async (_opts, cmd: Command) => {
      const images = await listImages(await requireDockerEngine());
      if (globalFlags(cmd).json) return sayJson(images);
      if (images.length === 0) return say("no Airlock image in this engine; `airlock image build` makes one");
      say(
        table(
          ["", "tag", "id", "created", "size", "postgres", "recipe"],
          images.map((i) => [
            i.current ? "*" : "",
            i.tag ?? "<none>",
            i.id.replace(/^sha256:/, "").slice(0, 12),
            i.created,
            megabytes(i.sizeBytes),
            i.postgres ?? "?",
            (i.recipeHash ?? "?").slice(0, 12),
          ]),
        ),
      );
    });
}
