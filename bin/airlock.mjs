#!/usr/bin/env node
// The `airlock` command: loads the TypeScript CLI through tsx so that
// airlock.config.ts files load the same way the CLI itself does.
import { register } from "tsx/esm/api";

register();
await import("../scripts/cli.ts");
