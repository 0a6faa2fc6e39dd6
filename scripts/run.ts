/**
 * `airlock run -- <agent command…>`: start a session and run the agent in
 * it, with the staging URL as its only database.
 */
import type { Command } from "commander";
import { diffSession, summaryLines } from "../src/diff/run-diff.ts";
import { runAgent } from "../src/staging/run.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, warn } from "./output.ts";
import { sessionFlags } from "./sessions.ts";

/** Registers the command. */
export function registerRun(program: Command): void {
  sessionFlags(program.command("run").description("run an agent command inside a fresh session (DATABASE_URL points at its staging database)"))
    .argument("<command...>", "the agent command, after --")
    .addHelpText(
      "after",
      `
The agent sees DATABASE_URL and PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for
its session's work database, and AIRLOCK_SESSION. Production URLs, AIRLOCK_*,
PULUMI_* secrets and any variable mentioning production are removed.
When the agent exits, its changes become a verified diff (as \`airlock diff\`);
the session is kept for review. The agent's exit code is Airlock's.

Example:
  airlock run --name fix-gallery -- node agent.js --task "fix the gallery"`,
    )
    .action(async (command: string[], opts: { snapshot?: string; name?: string; ttl?: number; keep?: boolean; backend?: "local" | "pulumi" }, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const project = await projectFor(cmd);
      const result = await runAgent(project, command, {
        ...(opts.snapshot === undefined ? {} : { snapshotId: opts.snapshot }),
        ...(opts.name === undefined ? {} : { name: opts.name }),
        ...(opts.ttl === undefined ? {} : { ttlMs: opts.ttl }),
        ...(opts.keep === true ? { keep: true } : {}),
        ...(opts.backend === undefined ? {} : { backend: opts.backend }),
        onSession: (s) => warn(`airlock: session ${s.id} (${s.backend}, snapshot ${s.snapshotId}) is ready; running ${command.join(" ")}`),
      });
      // What the agent did becomes a verified diff at once; the session stays for review.
      const diff = await diffSession(project, result.session.id);
      if (json) sayJson({ session: result.session.id, exitCode: result.exitCode, diff: { id: diff.id, verified: diff.diff.verification.verified, summary: diff.diff.summary, hazards: diff.diff.hazards } });
      else {
        warn(`airlock: the agent exited with ${result.exitCode}; session ${result.session.id} is kept for review (\`airlock down ${result.session.id}\` removes it)`);
        for (const line of summaryLines(diff)) say(line);
      }
      process.exitCode = result.exitCode;
    });
}
