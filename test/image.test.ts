/**
 * Airlock's PostgreSQL 15 image (src/staging/image*.ts, `airlock image`). The
 * recipe's tag is checked anywhere; the rest runs on the real engine at
 * DOCKER_HOST (tools/dockerd.sh starts one): the image is built once when
 * absent (about a minute, as root with debootstrap) and reused after, and a
 * throwaway container proves it holds what the session containers run. Where
 * no engine answers, or the image is absent and cannot be built here, those
 * tests are skipped and say why.
 */
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import type Docker from "dockerode";
import { afterAll, describe, expect, it } from "vitest";
import { AirlockError } from "../src/errors.ts";
import { dockerClient, dockerEndpoint, probeDocker } from "../src/staging/docker-engine.ts";
import { IMAGE_RECIPE, type ImageRecipe, buildImage, defaultImageTag, imageTag, recipeHash } from "../src/staging/image.ts";
import { importChanges } from "../src/staging/image-recipe.ts";
import { findDebootstrap } from "../src/staging/image-rootfs.ts";

const BIN = resolve(import.meta.dirname, "..", "bin", "airlock.mjs");
const TEST_LABEL = { "airlock.test": "image" };

function airlock(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000) {
  const started = Date.now();
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", env: { ...process.env, ...env }, timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - started };
}

/** The text of a container's logs without a terminal: frames of an 8-byte header (stream, size) and their bytes. */
function demux(logs: Buffer): string {
  const parts: Buffer[] = [];
  for (let at = 0; at + 8 <= logs.length;) {
    const size = logs.readUInt32BE(at + 4);
    parts.push(logs.subarray(at + 8, at + 8 + size));
    at += 8 + size;
  }
  return Buffer.concat(parts).toString("utf8");
}

/** A recipe like the current one with one field changed (a copy: the current one stays as it is). */
function changed(patch: Partial<ImageRecipe>): ImageRecipe {
  return { ...structuredClone(IMAGE_RECIPE), ...patch };
}

/** Why the tests on the engine cannot run here, or null when they can. */
async function engineProblem(): Promise<string | null> {
  const unreachable = await probeDocker(dockerEndpoint());
  if (unreachable !== null) return `no Docker engine answers (${unreachable}); tools/dockerd.sh start DIR starts one`;
  const docker = dockerClient();
  const present = await docker
    .getImage(defaultImageTag())
    .inspect()
    .then(() => true)
    .catch(() => false);
  if (present) return null;
  if (process.getuid?.() !== 0) return `${defaultImageTag()} is absent, and building it needs root`;
  if (findDebootstrap() === undefined) return `${defaultImageTag()} is absent, and building it needs debootstrap (apt-get install debootstrap)`;
  return null;
}

const problem = await engineProblem();
if (problem !== null) console.warn(`test/image.test.ts: the image tests on the Docker engine are skipped: ${problem}`);

describe("the image recipe", () => {
  it("names its image after its content: a changed recipe gives a new tag, the same content the same tag", () => {
    const tag = imageTag(IMAGE_RECIPE);
    expect(tag).toMatch(/^airlock-postgres:15-[0-9a-f]{12}$/);
    expect(tag).toBe(`airlock-postgres:15-${recipeHash().slice(0, 12)}`);
    expect(defaultImageTag()).toBe(tag);
    // Same content, built anew and with its keys in another order: same tag.
    const reordered = Object.fromEntries(Object.entries(structuredClone(IMAGE_RECIPE)).reverse()) as unknown as ImageRecipe;
    expect(imageTag(reordered)).toBe(tag);
    expect(imageTag(changed({}))).toBe(tag);
    // Any change to what goes into the image: another tag, each its own.
    const others = [
      changed({ packages: [...IMAGE_RECIPE.packages, "less"] }),
      changed({ suite: "trixie" }),
      changed({ env: { ...IMAGE_RECIPE.env, LANG: "de_DE.UTF-8" } }),
      changed({ remove: IMAGE_RECIPE.remove.filter((r) => !r.startsWith("usr/share/man")) }),
      changed({ requiredCommands: [...IMAGE_RECIPE.requiredCommands, "tar"] }),
      changed({ format: IMAGE_RECIPE.format + 1 }),
    ].map((r) => imageTag(r));
    expect(others).not.toContain(tag);
    expect(new Set(others).size).toBe(others.length);
    // Nothing above changed the recipe in use.
    expect(defaultImageTag()).toBe(tag);
  });

  it("gives containers the PostgreSQL 15 binaries first on PATH, LANG=C.UTF-8, and labels with the recipe", () => {
    const changes = importChanges(IMAGE_RECIPE, "15.99 (test)");
    expect(changes).toContain("ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    expect(changes).toContain("ENV LANG=C.UTF-8");
    expect(changes).toContain('LABEL airlock.image="postgres"');
    expect(changes).toContain(`LABEL airlock.image.recipe="${recipeHash()}"`);
    expect(changes).toContain('LABEL airlock.image.postgres="15.99 (test)"');
    expect(IMAGE_RECIPE.requiredCommands).toEqual(
      expect.arrayContaining(["setpriv", "sha256sum", "gzip", "cp", "find", "pg_isready", "psql", "initdb", "pg_ctl", "postgres"]),
    );
  });

  it("refuses a mirror that is not an http(s) URL and an engine that does not answer, before anything is built", async () => {
    const refused = async (options: Parameters<typeof buildImage>[0]) =>
      buildImage(options).then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(await refused({ mirror: "ftp://deb.debian.org/debian" })).toMatchObject({ code: "AIRLOCK_BAD_URL" });
    expect(await refused({ mirror: "not a url" })).toMatchObject({ code: "AIRLOCK_BAD_URL" });
    const noEngine = await refused({ env: { ...process.env, DOCKER_HOST: "unix:///nonexistent/airlock-test/docker.sock" } });
    expect(noEngine).toBeInstanceOf(AirlockError);
    expect(noEngine).toMatchObject({ code: "AIRLOCK_DOCKER_UNAVAILABLE", message: expect.stringContaining("/nonexistent/airlock-test/docker.sock") });
    expect((noEngine as AirlockError).hint).toMatch(/DOCKER_HOST/);
    // The CLI: the same error as JSON, exit 1; a bad --mirror is refused by the flag's parser.
    const ls = airlock(["image", "ls", "--json"], { DOCKER_HOST: "unix:///nonexistent/airlock-test/docker.sock" });
    expect(ls.code).toBe(1);
    expect(JSON.parse(ls.stdout)).toMatchObject({ ok: false, error: { code: "AIRLOCK_DOCKER_UNAVAILABLE" } });
    const mirror = airlock(["image", "build", "--mirror", "ftp://x/debian"]);
    expect(mirror.code).toBe(1);
    expect(mirror.stderr).toMatch(/http or https URL/);
  });
});

describe.skipIf(problem !== null)("the image on the Docker engine", () => {
  const docker: Docker = dockerClient();
  const containers: Docker.Container[] = [];

  afterAll(async () => {
    for (const c of containers) await c.remove({ force: true }).catch(() => undefined);
  });

  it("`airlock image build` twice: built (or found) once, then reused at once with the same tag", { timeout: 600_000 }, () => {
    // The first run builds when the engine lacks the image (about a minute), else reuses it.
    const first = airlock(["image", "build", "--json"], {}, 540_000);
    expect(first.code, first.stderr).toBe(0);
    const one = JSON.parse(first.stdout) as { tag: string; reused: boolean; recipeHash: string; postgres: string; sizeBytes: number; seconds: number };
    expect(one).toMatchObject({ tag: defaultImageTag(), recipeHash: recipeHash(), postgres: expect.stringMatching(/^15\.\d+/) });
    if (!one.reused) console.warn(`test/image.test.ts: built ${one.tag} in ${one.seconds.toFixed(0)} s, ${(one.sizeBytes / 1e6).toFixed(0)} MB`);
    const second = airlock(["image", "build", "--json"]);
    expect(second.code, second.stderr).toBe(0);
    const two = JSON.parse(second.stdout) as typeof one;
    expect(two).toMatchObject({ tag: one.tag, reused: true, recipeHash: one.recipeHash, postgres: one.postgres });
    expect(two.seconds).toBeLessThan(5);
    expect(second.ms).toBeLessThan(60_000);
  });

  it("`airlock image ls --json` lists it with its recipe hash, as the current recipe's image", () => {
    const r = airlock(["image", "ls", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const images = JSON.parse(r.stdout) as {
      tag: string | null;
      id: string;
      recipeHash: string | null;
      current: boolean;
      sizeBytes: number;
      created: string;
    }[];
    const mine = images.find((i) => i.tag === defaultImageTag());
    expect(mine).toMatchObject({ recipeHash: recipeHash(), current: true, id: expect.stringMatching(/^sha256:/) });
    expect(mine!.sizeBytes).toBeGreaterThan(50_000_000);
    expect(Number.isNaN(Date.parse(mine!.created))).toBe(false);
    const text = airlock(["image", "ls"]);
    expect(text.stdout).toContain(defaultImageTag());
  });

  it(
    "a container of the image has the server and what the entrypoint runs, no Debian cluster, and can initialise and start a cluster",
    { timeout: 120_000 },
    async () => {
      const script = [
        "set -e",
        "initdb --version",
        "postgres --version",
        'for c in bash setpriv sha256sum gzip cp find pg_isready psql pg_ctl; do command -v "$c" >/dev/null || { echo "missing $c"; exit 1; }; done',
        'echo "PATH=$PATH LANG=$LANG"',
        "test ! -e /var/lib/postgresql/15/main && test ! -e /etc/postgresql/15/main && echo no-debian-cluster",
        'test -z "$(ls -A /var/lib/apt/lists)" && test ! -e /usr/share/man/man1 && test -f /usr/share/doc/bash/copyright && echo shrunk',
        "echo hello | gzip | gzip -d | sha256sum >/dev/null",
        // As the server's user, on a Unix socket only (host networking: no TCP port is taken).
        "mkdir /tmp/pg && chown postgres: /tmp/pg",
        "setpriv --reuid=postgres --regid=postgres --init-groups initdb -D /tmp/pg/data -U postgres -A trust >/dev/null",
        "setpriv --reuid=postgres --regid=postgres --init-groups pg_ctl -D /tmp/pg/data -o \"-c listen_addresses='' -k /tmp/pg\" -l /tmp/pg/log -w start >/dev/null",
        "pg_isready -q -h /tmp/pg && psql -h /tmp/pg -U postgres -Atc 'select version()'",
        "setpriv --reuid=postgres --regid=postgres --init-groups pg_ctl -D /tmp/pg/data -w stop >/dev/null",
      ].join("\n");
      const container = await docker.createContainer({
        Image: defaultImageTag(),
        Cmd: ["bash", "-c", script],
        // No terminal: psql would start a pager on one, and wait for it.
        Tty: false,
        Labels: TEST_LABEL,
        HostConfig: { NetworkMode: "host" },
      });
      containers.push(container);
      await container.start();
      const exit = (await container.wait()) as { StatusCode: number };
      const output = demux(await container.logs({ stdout: true, stderr: true }));
      expect(exit.StatusCode, output).toBe(0);
      expect(output).toMatch(/^initdb \(PostgreSQL\) 15\.\d+/m);
      expect(output).toMatch(/^postgres \(PostgreSQL\) 15\.\d+/m);
      expect(output).toContain("PATH=/usr/lib/postgresql/15/bin:");
      expect(output).toContain("LANG=C.UTF-8");
      expect(output).toContain("no-debian-cluster");
      expect(output).toContain("shrunk");
      expect(output).toMatch(/^PostgreSQL 15\.\d+/m);
    },
  );

  it.skipIf(process.getuid?.() !== 0 || findDebootstrap() === undefined)(
    "a failing debootstrap is AIRLOCK_IMAGE_BUILD_FAILED with its last lines, and leaves no build directory (root and debootstrap only)",
    { timeout: 120_000 },
    async () => {
      const before = readdirSync(tmpdir()).filter((n) => n.startsWith(`airlock-image-${process.pid}-`));
      // Another recipe (its image is absent) from a mirror where nothing listens: debootstrap fails at once.
      const recipe = changed({ packages: [...IMAGE_RECIPE.packages, "airlock-test-no-such-build"] });
      const phases: string[] = [];
      const e = await buildImage({ recipe, mirror: "http://127.0.0.1:9/debian", onProgress: (p) => p.detail === undefined && phases.push(p.phase) }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(AirlockError);
      expect(e).toMatchObject({ code: "AIRLOCK_IMAGE_BUILD_FAILED", message: expect.stringContaining("debootstrap exited with") });
      expect((e as AirlockError).message).toMatch(/127\.0\.0\.1:9/);
      expect((e as AirlockError).hint).toMatch(/mirror/);
      expect(phases).toEqual(["debootstrap"]);
      expect(readdirSync(tmpdir()).filter((n) => n.startsWith(`airlock-image-${process.pid}-`))).toEqual(before);
      // Nothing was tagged for it.
      expect(
        await docker
          .getImage(imageTag(recipe))
          .inspect()
          .then(
            () => "present",
            () => "absent",
          ),
      ).toBe("absent");
    },
  );

  it("without debootstrap (or root) a build that is needed is refused up front, saying what to install or use instead", async () => {
    const recipe = changed({ packages: [...IMAGE_RECIPE.packages, "airlock-test-no-such-build"] });
    const e = await buildImage({ recipe, env: { ...process.env, PATH: "/nonexistent" } }).then(
      () => undefined,
      (err: unknown) => err,
    );
    if (process.getuid?.() === 0) {
      expect(e).toMatchObject({ code: "AIRLOCK_IMAGE_NO_DEBOOTSTRAP", hint: expect.stringContaining("apt-get install debootstrap") });
    } else {
      expect(e).toMatchObject({ code: "AIRLOCK_IMAGE_NEEDS_ROOT", hint: expect.stringContaining("postgres:15.10-bookworm") });
    }
  });
});
