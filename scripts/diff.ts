/**
 * `airlock diff <session>`: the verified promotion diff of a session.
 */
import type { Command } from "commander";
import { diffSession, summaryLines } from "../src/diff/run-diff.ts";
import { EXIT_REFUSED } from "../src/errors.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, withProgress } from "./output.ts";
import { diffPhases } from "./phases.ts";

/** Registers the command. */
export function registerDiff(program: Command): void {
  program
    .command("diff <session>")
    .description("compute the verified promotion diff of a session (schema + rows, replayed, hazards flagged)")
    .addHelpText(
      "after",
      `
Writes .airlock/diffs/<id>/: diff.json (canonical; its sha256 is the id),
diff.mac (an HMAC of diff.json, verification result included, under a key
derived from AIRLOCK_SECRET: approve and promote refuse a diff whose MAC does
not hold), promote.sql (a readable preview), review.md and review.html. Only a
diff whose replay on a fresh clone of base reproduces work (every row, and the
whole catalog: definitions, owners, grants, settings) is "verified".
Needs AIRLOCK_SECRET, the one the snapshot was taken with (exit 2 otherwise).
Exits 0 for a verified diff, 2 for one that is NOT verified.

Examples:
  airlock diff fix-gallery
  airlock review 3f9a2c1b                # opens the review page it printed`,
    )
    .action(async (session: string, _opts, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const project = await projectFor(cmd);
      const r = await withProgress(!json, "diff", (bar) => diffSession(project, session, { onProgress: diffPhases(bar) }));
      // A diff that is not verified cannot be approved: say so with the exit code too.
      if (!r.diff.verification.verified) process.exitCode = EXIT_REFUSED;
      if (json) {
        return sayJson({
          id: r.id,
          dir: r.dir,
          session: r.diff.session,
          snapshot: r.diff.snapshot,
          verified: r.diff.verification.verified,
          verification: r.diff.verification,
          summary: r.diff.summary,
          hazards: r.diff.hazards,
          elapsedMs: r.elapsedMs,
        });
      }
      for (const line of summaryLines(r)) say(line);
    });
}
