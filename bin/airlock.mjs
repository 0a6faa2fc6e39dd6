#!/usr/bin/env node
// The `airlock` command. The published package runs the JavaScript that `npm run build` compiles into dist/:
// no TypeScript loader to start first, so a command starts in about half the time (README, "Packaging").
// A checkout, which has scripts/cli.ts (the package ships no TypeScript), runs its sources through tsx,
// so an edit takes effect without a build.
import { existsSync } from "node:fs";

const source = new URL("../scripts/cli.ts", import.meta.url);
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import("../dist/scripts/cli.js");
}
