/**
 * The root file system of Airlock's image, made on this machine: debootstrap
 * installs the recipe's packages into a build directory, the recipe's removals
 * shrink it, and a check inside it (chroot) proves every command the container
 * runs is there. The build directory is removed whatever happens, and never
 * while something is still mounted inside it (debootstrap mounts /proc, /sys and
 * sometimes the host's /dev there: deleting through those would delete the host's).
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AirlockError } from "../errors.ts";
import { findOnPath } from "../os/executables.ts";
import { processAlive } from "../os/processes.ts";
import type { ImageRecipe } from "./image-recipe.ts";

/** How many of debootstrap's last lines a failure shows. */
const TAIL_LINES = 15;
/** The build directories' prefix under the system's temporary directory: `airlock-image-<pid>-…`. */
const BUILD_DIR_PREFIX = "airlock-image-";

/** A mirror URL without its user and password, for messages. */
export function mirrorForDisplay(mirror: string): string {
  try {
    const url = new URL(mirror);
    url.username = "";
    url.password = "";
    return url.href.replace(/\/$/, "");
  } catch {
    return "(unparsable URL)";
  }
}

/** The debootstrap executable on PATH (root's PATH has the sbin directories it lives in), else undefined. */
export function findDebootstrap(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return findOnPath("debootstrap", env);
}

/** A new build directory; build directories left by builds whose process is gone (killed outright) are removed first. */
export function makeBuildDir(): string {
  for (const name of readdirSync(tmpdir())) {
    const pid = Number(/^airlock-image-(\d+)-/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) {
      try {
        removeBuildDir(join(tmpdir(), name));
      } catch {
        // Still mounted or not ours to remove: left for a person to look at.
      }
    }
  }
  return mkdtempSync(join(tmpdir(), `${BUILD_DIR_PREFIX}${process.pid}-`));
}

/** Mount points at or below a directory, deepest first (from /proc/self/mountinfo, whose paths escape blanks as \040). */
function mountsUnder(dir: string): string[] {
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return [];
  }
  const points = text
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))));
  return points.filter((p) => p === dir || p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
}

/** Unmounts whatever is still mounted inside a build directory, then deletes it; refuses to delete through a mount. */
export function removeBuildDir(dir: string): void {
  if (!existsSync(dir)) return;
  const real = realpathSync(dir);
  for (const point of mountsUnder(real)) spawnSync("umount", ["--lazy", point], { stdio: "ignore" });
  const left = mountsUnder(real);
  if (left.length > 0) {
    throw new AirlockError(
      "AIRLOCK_IMAGE_BUILD_FAILED",
      `the build directory ${dir} still has mounts inside it (${left.join(", ")}), so it was left in place`,
      {
        hint: `unmount them (umount --lazy <path>) and remove ${dir} by hand`,
      },
    );
  }
  rmSync(real, { recursive: true, force: true });
}

/** What debootstrap and its log said last, for a failure's message (package and mirror names, never a secret). */
function tailOf(lines: readonly string[], logFile: string): string {
  let log: string[] = [];
  try {
    log = readFileSync(logFile, "utf8").trimEnd().split("\n").slice(-TAIL_LINES);
  } catch {
    // debootstrap removes its log when it succeeds, and writes none when it fails early
  }
  const shown = [...lines.slice(-TAIL_LINES), ...(log.length > 0 ? ["debootstrap.log:", ...log] : [])];
  return shown.map((l) => `  ${l}`).join("\n");
}

/** Runs debootstrap for a recipe into `root`; its "I:" lines go to onLine as they come. */
export async function debootstrap(
  executable: string,
  recipe: ImageRecipe,
  root: string,
  mirror: string,
  env: NodeJS.ProcessEnv,
  onLine: (line: string) => void,
): Promise<void> {
  const args = [
    `--variant=${recipe.variant}`,
    `--include=${recipe.packages.join(",")}`,
    // Release files must be signed by Debian's archive key, whatever mirror (http too) they come from.
    "--force-check-gpg",
    recipe.suite,
    root,
    mirror,
  ];
  const child = spawn(executable, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...env, DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C.UTF-8" },
  });
  const lines: string[] = [];
  let partial = "";
  const collect = (chunk: Buffer) => {
    const parts = (partial + chunk.toString("utf8")).split("\n");
    partial = parts.pop() ?? "";
    for (const line of parts) {
      lines.push(line);
      if (lines.length > TAIL_LINES * 4) lines.splice(0, lines.length - TAIL_LINES);
      if (line.startsWith("I: ")) onLine(line.slice(3));
    }
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((done) => {
    child.once("error", (error) => done({ code: null, signal: null, error }));
    child.once("close", (code, signal) => done({ code, signal }));
  });
  if (partial !== "") lines.push(partial);
  if (result.code === 0) return;
  const how =
    result.error !== undefined
      ? `could not start (${result.error.message})`
      : result.signal !== null
        ? `was killed by ${result.signal}`
        : `exited with ${result.code}`;
  throw new AirlockError(
    "AIRLOCK_IMAGE_BUILD_FAILED",
    `debootstrap ${how} installing ${recipe.suite} (${recipe.variant} + ${recipe.packages.join(", ")}) from ${mirrorForDisplay(mirror)}; its last lines:\n${tailOf(lines, join(root, "debootstrap", "debootstrap.log"))}`,
    {
      hint: "check that the mirror answers (--mirror <url> for another one), that Debian's archive keyring is installed (apt-get install debian-archive-keyring), and that the temporary directory allows devices and execution (TMPDIR)",
    },
  );
}

/** Whether a path of the root (split in names) matches a pattern of the recipe (split in names; `*` within one name). */
function matches(pattern: readonly string[], names: readonly string[]): boolean {
  return pattern.length === names.length && pattern.every((p, i) => globName(p).test(names[i]!));
}

function globName(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
}

/** Removes one path of the root, keeping the kept paths below it (their parents stay). */
function removeKeeping(root: string, names: readonly string[], keep: readonly (readonly string[])[]): void {
  const path = join(root, ...names);
  const below = keep.filter((k) => k.length > names.length && matches(k.slice(0, names.length), names));
  if (keep.some((k) => matches(k, names))) return;
  const stat = lstatSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return;
  if (below.length > 0 && stat.isDirectory()) {
    for (const child of readdirSync(path)) removeKeeping(root, [...names, child], below);
    return;
  }
  rmSync(path, { recursive: true, force: true });
}

/** Every path of the root a pattern names; a symbolic link is never followed on the way (it could lead out of the root). */
function expand(root: string, pattern: readonly string[], at: readonly string[] = []): string[][] {
  if (at.length === pattern.length) return [[...at]];
  const dir = join(root, ...at);
  if (lstatSync(dir, { throwIfNoEntry: false })?.isDirectory() !== true) return [];
  const name = pattern[at.length]!;
  const children = name.includes("*") ? readdirSync(dir).filter((c) => globName(name).test(c)) : [name];
  return children.flatMap((c) => expand(root, pattern, [...at, c]));
}

/** Applies the recipe's removals to the root file system. */
export function shrinkRoot(root: string, recipe: ImageRecipe): void {
  const keep = recipe.keep.map((k) => k.split("/"));
  for (const pattern of recipe.remove) for (const names of expand(root, pattern.split("/"))) removeKeeping(root, names, keep);
}

/** Checks, inside the root (chroot), that every command the container runs is found on the image's PATH; returns the server's version. */
export function checkRoot(root: string, recipe: ImageRecipe): string {
  const path = recipe.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin";
  const find = spawnSync(
    "chroot",
    [
      root,
      "/usr/bin/env",
      "-i",
      `PATH=${path}`,
      "bash",
      "-c",
      'for c in "$@"; do command -v "$c" >/dev/null || echo "$c"; done',
      "check",
      ...recipe.requiredCommands,
    ],
    { encoding: "utf8" },
  );
  const missing = find.status === 0 ? find.stdout.split("\n").filter((l) => l !== "") : recipe.requiredCommands;
  if (find.status !== 0 || missing.length > 0) {
    throw new AirlockError(
      "AIRLOCK_IMAGE_BUILD_FAILED",
      find.status === 0
        ? `the image would lack commands its containers run: ${missing.join(", ")}`
        : `the installed system cannot run bash to check its commands (${(find.error?.message ?? find.stderr).trim()})`,
      { hint: "add the Debian packages that provide them to the recipe (src/staging/image-recipe.ts)" },
    );
  }
  const version = spawnSync("chroot", [root, "/usr/bin/env", "-i", `PATH=${path}`, "postgres", "--version"], { encoding: "utf8" });
  const found = /\(PostgreSQL\)\s+(.+)$/m.exec(version.stdout ?? "")?.[1]?.trim();
  if (version.status !== 0 || found === undefined || !found.startsWith(`${recipe.postgresMajor}.`)) {
    throw new AirlockError(
      "AIRLOCK_IMAGE_BUILD_FAILED",
      `the image's postgres is not PostgreSQL ${recipe.postgresMajor}: ${(version.stdout || version.stderr).trim()}`,
      {
        hint: "check the recipe's packages (src/staging/image-recipe.ts)",
      },
    );
  }
  return found;
}
