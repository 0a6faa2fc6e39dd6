/**
 * `airlock demo`: the main job on the embedded default (see
 * seeders/demo/story.ts): the agent incident replayed safely, end to end.
 * Exits 0 only if every check it shows held.
 */
import type { Command } from "commander";
import { runDemo } from "../seeders/demo/story.ts";
import { displayPath } from "../src/config/state-file.ts";
import { globalFlags, projectFor } from "./context.ts";
import { positiveNumber } from "./options.ts";
import { say, sayJson } from "./output.ts";

/** Registers the command. */
export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description("replay the gallery incident safely on the embedded default: snapshot, agent session, diff, approval, promotion, rollback")
    .option("--scale <n>", "size of the demo production (1 is hundreds of rows)", positiveNumber, 1)
    .option("--keep-running", "leave the demo's clusters running afterwards")
    .addHelpText(
      "after",
      "\nThe demo keeps its own state in .airlock/demo/ (its clusters, snapshots, sessions, diffs, audit trail), apart\nfrom the project's: `airlock ls` and `airlock snapshot ls` never show it. The next demo starts it afresh.\n\nExamples:\n  airlock demo\n  airlock demo --scale 10 --keep-running",
    )
    .action(async (opts: { scale: number; keepRunning?: boolean }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const r = await runDemo(
        await projectFor(cmd),
        { scale: opts.scale, ...(opts.keepRunning === true ? { keepRunning: true } : {}) },
        { heading: (t) => !json && say(`\n== ${t}`), info: (t) => !json && say(t), agentOutput: json ? "ignore" : "inherit" },
      );
      if (json) sayJson(r);
      else {
        say(`\n== Summary`);
        say(
          `${r.ok ? "demo passed" : "demo FAILED"}: ${r.checks.filter((c) => c.ok).length}/${r.checks.length} checks held in ${(r.elapsedMs / 1000).toFixed(1)} s`,
        );
        for (const c of r.checks.filter((x) => !x.ok)) say(`  FAILED (${c.step}): ${c.name}`);
        say(
          `  the incident's diff ${r.incidentDiff.slice(0, 12)} was refused; the fix ${r.fixDiff.slice(0, 12)} was promoted as ${r.promotion} and rolled back`,
        );
        const state = displayPath(r.stateDir);
        say(`  review pages: ${state}/diffs/<id>/review.html; the demo's state is in ${state}, apart from this project's (the next demo replaces it)`);
        if (opts.keepRunning === true) say(`  its clusters keep running (${state}/production, ${state}/cluster) until the next \`airlock demo\` replaces them`);
      }
      if (!r.ok) process.exitCode = 1;
    });
}
