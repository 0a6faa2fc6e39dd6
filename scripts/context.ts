/**
 * What every command gets: the global flags and the loaded project.
 */
import type { Command } from "commander";
import { type Project, loadProject } from "../src/config/load.ts";

/** Global flags shared by all commands. */
export interface GlobalFlags {
  readonly json: boolean;
  readonly config?: string;
}

/** The global flags as seen from inside a command's action. */
export function globalFlags(cmd: Command): GlobalFlags {
  const o = cmd.optsWithGlobals() as { json?: boolean; config?: string };
  return { json: o.json === true, ...(o.config === undefined ? {} : { config: o.config }) };
}

/** Loads the project in the working directory, honouring --config. */
export function projectFor(cmd: Command): Promise<Project> {
  const flags = globalFlags(cmd);
  return loadProject(flags.config === undefined ? {} : { configFile: flags.config });
}
