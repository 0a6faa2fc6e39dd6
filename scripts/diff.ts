/**
 * `airlock diff <session>`: the verified promotion diff of a session.
 */
import type { Command } from "commander";
import { diffSession, summaryLines } from "../src/diff/run-diff.ts";
import { globalFlags, projectFor } from "./context.ts";
import { progress, say, sayJson } from "./output.ts";

/** Registers the command. */
export function registerDiff(program: Command): void {
  program
    .command("diff <session>")
    .description("compute the verified promotion diff of a session (schema + rows, replayed, hazards flagged)")
    .addHelpText(
      "after",
      `
Writes .airlock/diffs/<id>/: diff.json (canonical; its sha256 is the id),
promote.sql (a readable preview), review.md and review.html. Only a diff whose
replay on a fresh clone of base reproduces work is "verified".

Example:
  airlock diff fix-gallery && open .airlock/diffs/<id>/review.html`,
    )
    .action(async (session: string, _opts, cmd: Command) => {
      const json = globalFlags(cmd).json;
      const bar = progress(!json);
      const r = await diffSession(await projectFor(cmd), session, (p) => bar.update(`${p.phase}${p.table === undefined ? "" : ` ${p.table}`}…`));
      bar.done();
      if (json) {
        return sayJson({ id: r.id, dir: r.dir, session: r.diff.session, snapshot: r.diff.snapshot, verified: r.diff.verification.verified, verification: r.diff.verification, summary: r.diff.summary, hazards: r.diff.hazards, elapsedMs: r.elapsedMs });
      }
      for (const line of summaryLines(r)) say(line);
    });
}
