/**
 * `airlock config`: validates airlock.config.ts and prints the effective
 * configuration (every default filled in).
 */
import type { Command } from "commander";
import { localClusterDir } from "../src/config/load.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson } from "./output.ts";

/** Registers the command. */
export function registerConfig(program: Command): void {
  program
    .command("config")
    .description("validate airlock.config.ts and print the effective configuration")
    .addHelpText("after", "\nExamples:\n  airlock config\n  airlock --config ci/airlock.config.ts config --json")
    .action(async (_opts, cmd: Command) => {
      const project = await projectFor(cmd);
      const effective = { configFile: project.configFile ?? null, stateDir: project.statePath(), clusterDir: localClusterDir(project), config: project.config };
      if (globalFlags(cmd).json) return sayJson(effective);
      say(`config: ${project.configFile ?? "(none: defaults)"} is valid`);
      say(JSON.stringify(project.config, null, 2));
    });
}
