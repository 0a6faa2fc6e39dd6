// Pulumi's entry point for infra/ (Pulumi.yaml `main: infra/`; with "type": "module" Pulumi
// imports index.js, index.mjs, then index.ts). Node 20 cannot import TypeScript by itself,
// and Pulumi's own ESM TypeScript mode needs ts-node, which Airlock does not ship; tsx (a
// dependency) is registered here instead, then the program in index.ts runs. Its default
// export is called by Pulumi and returns the stack outputs.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./index.ts");

export default main;
