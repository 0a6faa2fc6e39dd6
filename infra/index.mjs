// Pulumi's entry point for infra/. In a checkout Pulumi.yaml says `main: infra/`, and with "type": "module" Pulumi
// imports index.js, index.mjs, then index.ts: this file. Node 20 cannot import TypeScript by itself, and Pulumi's
// own ESM TypeScript mode needs ts-node, which Airlock does not ship; tsx (a dependency) is registered here
// instead, then the program in index.ts runs. In the published package the program is compiled JavaScript
// (index.js beside this file, built into dist/ with a Pulumi.yaml naming this file as `main`), imported as is.
// Its default export is called by Pulumi and returns the stack outputs.
import { existsSync } from "node:fs";

const compiled = new URL("./index.js", import.meta.url);
let program;
if (existsSync(compiled)) program = await import(compiled.href);
else {
  const { register } = await import("tsx/esm/api");
  register();
  program = await import("./index.ts");
}

export default program.main;
