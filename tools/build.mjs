#!/usr/bin/env node
// `npm run build` (and `npm pack`, through prepack): compiles what the published package runs into dist/ —
// JavaScript with .d.ts files, laid out like the source tree (tsconfig.build.json) — and copies beside it the
// files the code reads relative to itself (the demo's SQL and scripted agent, infra's entry point, Pulumi.yaml),
// so every path a module resolves from its own location holds in dist/ as in a checkout.
import { spawnSync } from "node:child_process";
import { cpSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const SOURCES = ["src", "scripts", "seeders", "infra"];

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const built = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
if (built.status !== 0) process.exit(built.status ?? 1);

/** Copies every file that is not TypeScript source (tsc compiled those). */
function copyAssets(from, to) {
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.isDirectory()) copyAssets(join(from, entry.name), join(to, entry.name));
    else if (!/\.[cm]?ts$/.test(entry.name)) cpSync(join(from, entry.name), join(to, entry.name));
  }
}
for (const dir of SOURCES) copyAssets(join(root, dir), join(dist, dir));
// dist/infra/ holds index.js (the compiled program, named exports only), which Pulumi would pick over index.mjs
// for `main: infra/`: the package's Pulumi.yaml names the entry point itself.
const pulumiYaml = readFileSync(join(root, "Pulumi.yaml"), "utf8");
if (!/^main: infra\/$/m.test(pulumiYaml)) throw new Error("Pulumi.yaml: expected `main: infra/`");
writeFileSync(join(dist, "Pulumi.yaml"), pulumiYaml.replace(/^main: infra\/$/m, "main: infra/index.mjs"));
