/**
 * The package works outside this checkout: `npm pack` (which builds dist/),
 * the tarball installed into an empty project, `npx airlock --help` there,
 * an `airlock.config.ts` there that imports `defineConfig` from "airlock"
 * loaded by `airlock config`, `airlock demo` run there on the compiled code,
 * and the library imported by plain Node. The tarball holds only what users
 * run: no tests, fixtures or bench results.
 *
 * The install runs offline, from the npm cache `npm ci` filled: the empty
 * project gets a lockfile made of this repository's (production entries
 * only), so npm needs no registry metadata. A cache without those tarballs
 * makes the install tests report skipped, with the reason, never passed.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = resolve(".");
let dir: string;
let app: string;
let packed: { filename: string; integrity: string; files: { path: string }[] };
let installed: { ok: true } | { ok: false; reason: string };

// npm's own settings (cache, registry) pass through; what the npm running these tests says about its package does not.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_(package|lifecycle)_/.test(k)));

function run(command: string, args: readonly string[], cwd: string, timeout = 180_000) {
  const r = spawnSync(command, args, { cwd, env, encoding: "utf8", timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, error: r.error };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "airlock-package-"));
  // The demo's clusters live in the project: their server user must be able to pass through.
  chmodSync(dir, 0o755);
  // Packed from a copy of the working tree, so the build (prepack: tools/build.mjs into dist/) neither touches the
  // checkout nor races another run; the copy shares node_modules (TypeScript) with it.
  const source = join(dir, "source");
  cpSync(REPO, source, { recursive: true, filter: (from) => !/^(node_modules|\.git|dist|\.airlock|\.env)$/.test(relative(REPO, from)) });
  symlinkSync(join(REPO, "node_modules"), join(source, "node_modules"));
  // The build's output goes to stderr, the file list to stdout.
  const pack = run("npm", ["pack", "--pack-destination", dir, "--json"], source, 300_000);
  expect(pack.code, `${pack.stderr}${pack.error ?? ""}`).toBe(0);
  packed = (JSON.parse(pack.stdout.slice(pack.stdout.indexOf("["))) as (typeof packed)[])[0]!;

  // An empty project whose lockfile pins airlock (the tarball) and its dependencies as this repository's lockfile does.
  app = join(dir, "app");
  const repoLock = JSON.parse(readFileSync(join(REPO, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };
  const manifest = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as Record<string, unknown>;
  const tarball = `file:../${packed.filename}`;
  const packages: Record<string, unknown> = {
    "": { name: "consumer", version: "1.0.0", dependencies: { airlock: tarball } },
    "node_modules/airlock": {
      version: manifest.version,
      resolved: tarball,
      integrity: packed.integrity,
      license: manifest.license,
      dependencies: manifest.dependencies,
      bin: manifest.bin,
      engines: manifest.engines,
    },
  };
  for (const [path, entry] of Object.entries(repoLock.packages)) if (path !== "" && entry.dev !== true) packages[path] = entry;
  mkdirSync(app, { mode: 0o755 });
  writeFileSync(
    join(app, "package.json"),
    `${JSON.stringify({ name: "consumer", version: "1.0.0", private: true, dependencies: { airlock: tarball } }, null, 2)}\n`,
  );
  writeFileSync(
    join(app, "package-lock.json"),
    `${JSON.stringify({ name: "consumer", version: "1.0.0", lockfileVersion: 3, requires: true, packages }, null, 2)}\n`,
  );
  const install = run("npm", ["ci", "--offline", "--no-audit", "--no-fund"], app, 300_000);
  if (install.code === 0) installed = { ok: true };
  else if (/ENOTCACHED|only-if-cached/.test(install.stderr)) {
    installed = {
      ok: false,
      reason: `skipped: the npm cache lacks a dependency's tarball and the install may not use the network (${(install.stderr.split("\n").find((l) => /only-if-cached/.test(l)) ?? "ENOTCACHED").replace(/^npm error /, "").trim()})`,
    };
  } else throw new Error(`npm ci of the packed tarball failed:\n${install.stderr}`);
}, 600_000);

afterAll(() => {
  // The demo stops the clusters it starts; this stops any a failed run left.
  if (installed?.ok === true) run("npx", ["--offline", "airlock", "cluster", "destroy", "--erase"], app);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function requireInstall(ctx: { skip: (note?: string) => void }): void {
  if (installed.ok) return;
  console.warn(installed.reason);
  ctx.skip(installed.reason);
}

describe("the packed package", () => {
  it("holds only what users run: the compiled code with its types, the executable, the README; no tests, fixtures or bench results", () => {
    const files = packed.files.map((f) => f.path).sort();
    expect(files).toEqual(
      expect.arrayContaining([
        "package.json",
        "README.md",
        "bin/airlock.mjs",
        "dist/src/index.js",
        "dist/src/index.d.ts",
        "dist/scripts/cli.js",
        "dist/Pulumi.yaml",
        "dist/infra/index.mjs",
        "dist/seeders/demo/agent.mjs",
        "dist/seeders/demo/schema.sql",
      ]),
    );
    expect(files.filter((f) => /(^|\/)(test|tests|fixtures|bench|node_modules|\.airlock)\//.test(f) || /results\.json$/.test(f))).toEqual([]);
    // TypeScript ships as declarations only: sources stay in the repository.
    expect(files.filter((f) => /\.[cm]?ts$/.test(f) && !f.endsWith(".d.ts"))).toEqual([]);
    expect(files.filter((f) => !/^(bin|dist)\//.test(f) && !/^LICEN[CS]E/i.test(f))).toEqual([".env.example", "README.md", "package.json"]);
  });

  it("installs into an empty project, and `npx airlock --help` runs the compiled CLI there", (ctx) => {
    requireInstall(ctx);
    const root = join(app, "node_modules", "airlock");
    // bin/airlock.mjs runs dist/ where there is no scripts/cli.ts: the package's own code, no TypeScript loader.
    expect(existsSync(join(root, "dist", "scripts", "cli.js"))).toBe(true);
    expect(existsSync(join(root, "scripts", "cli.ts"))).toBe(false);
    const help = run("npx", ["--offline", "airlock", "--help"], app);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: airlock/m);
    expect(help.stdout).toContain("Exit codes: 0 ok, 1 error, 2 refused");
  }, 180_000);

  it('loads an airlock.config.ts that imports defineConfig from "airlock"', (ctx) => {
    requireInstall(ctx);
    const file = join(app, "airlock.config.ts");
    writeFileSync(
      file,
      'import { defineConfig } from "airlock";\n\nexport default defineConfig({ masking: { sampleSize: 321 }, staging: { connectionLimit: 7 } });\n',
    );
    const config = run("npx", ["--offline", "airlock", "config", "--json"], app);
    expect(config.code, config.stderr).toBe(0);
    const effective = JSON.parse(config.stdout) as {
      configFile: string;
      config: { masking: { sampleSize: number }; staging: { connectionLimit: number; backend: string } };
    };
    expect(effective.configFile).toBe(file);
    expect(effective.config.masking.sampleSize).toBe(321);
    expect(effective.config.staging).toMatchObject({ connectionLimit: 7, backend: "local" });
  }, 180_000);

  it("runs `npx airlock demo` there: the compiled CLI, supervisor, demo data and agent do the whole job", (ctx) => {
    requireInstall(ctx);
    const demo = run("npx", ["--offline", "airlock", "demo", "--json"], app, 300_000);
    expect(demo.code, demo.stderr).toBe(0);
    const result = JSON.parse(demo.stdout.slice(demo.stdout.indexOf("{"))) as { ok: boolean; checks: { ok: boolean; name: string }[] };
    expect(result.checks.filter((c) => !c.ok)).toEqual([]);
    expect(result.ok).toBe(true);
  }, 300_000);

  it("is a library plain Node imports: the pipeline's functions, no loader", (ctx) => {
    requireInstall(ctx);
    const names = [
      "defineConfig",
      "loadProject",
      "takeSnapshot",
      "captureSnapshot",
      "createSession",
      "destroySession",
      "listSessions",
      "agentConnection",
      "runAgent",
      "diffSession",
      "computeDiff",
      "approveDiff",
      "promoteDiff",
      "rollbackPromotion",
      "verifyAudit",
    ];
    const script = `import * as airlock from "airlock";\nconst names = ${JSON.stringify(names)};\nconsole.log(JSON.stringify(Object.fromEntries(names.map((n) => [n, typeof airlock[n]]))));\nconsole.log(JSON.stringify(airlock.defineConfig({ masking: { sampleSize: 5 } })));\n`;
    const r = run(process.execPath, ["--input-type=module", "-e", script], app);
    expect(r.code, r.stderr).toBe(0);
    const [types, config] = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(types).toEqual(Object.fromEntries(names.map((n) => [n, "function"])));
    expect(config).toEqual({ masking: { sampleSize: 5 } });
  }, 180_000);
});
