/**
 * `airlock approve`, `airlock promote`, `airlock rollback`: the steps that
 * end at production (approve itself never reads it).
 */
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { defaultActor } from "../src/audit/chain.ts";
import { productionTarget } from "../src/config/production.ts";
import { readDiff, resolveDiffId } from "../src/diff/store.ts";
import { AirlockError, EXIT_REFUSED } from "../src/errors.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { promoteDiff } from "../src/promote/promote.ts";
import { countsText } from "../src/diff/run-diff.ts";
import { plural } from "../src/format/plural.ts";
import { checkPromotionId, rollbackPromotion } from "../src/promote/rollback.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, withProgress } from "./output.ts";
import { promotePhases, rollbackPhases } from "./phases.ts";

async function confirmOnTerminal(id: string): Promise<void> {
  if (process.stdin.isTTY !== true) {
    throw new AirlockError("AIRLOCK_CONFIRMATION_REQUIRED", "approving needs a confirmation typed on a terminal", {
      hint: "run it on a terminal, or pass --yes once you have reviewed the diff",
      exitCode: EXIT_REFUSED,
    });
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = (await rl.question(`type the first 8 characters of the diff id (${id.slice(0, 8)}…) to approve it: `)).trim();
  rl.close();
  if (answer !== id.slice(0, 8))
    throw new AirlockError("AIRLOCK_CONFIRMATION_REQUIRED", "the confirmation did not match; nothing was approved", {
      hint: "try again",
      exitCode: EXIT_REFUSED,
    });
}

/** Registers the commands. */
export function registerPromote(program: Command): void {
  program
    .command("approve <diff>")
    .description(
      "approve a verified diff by its id, accepting each danger hazard by name (never reads production); the approval is MAC'd and authorises one promotion",
    )
    // Required, but checked after the diff id: arguments are checked in the order a user reads them.
    .option("--by <name>", "who approves (required; recorded in the audit trail)")
    .option("--accept <hazard...>", "danger hazard codes you accept, e.g. BULK_DELETE MASKED_VALUE")
    .option("--note <text>", "why it is fine")
    .option("--yes", "skip the typed confirmation (for scripts, after review)")
    .addHelpText(
      "after",
      '\nNeeds AIRLOCK_SECRET: the diff\'s MAC must hold (exit 2 otherwise), and the approval (a random id, the diff id, approver, time,\naccepted hazards, note) is written with a MAC of its own. One approval authorises one promotion.\n\nExample:\n  airlock approve 3f9a2c1b --by alice --accept BULK_DELETE --note "cleanup agreed in #412"',
    )
    .action(async (idArg: string, opts: { by?: string; accept?: string[]; note?: string; yes?: boolean }, cmd: Command) => {
      const project = await projectFor(cmd);
      const { id } = readDiff(project, idArg);
      if (opts.by === undefined) return cmd.error("error: required option '--by <name>' not specified");
      if (opts.yes !== true) await confirmOnTerminal(id);
      const a = approveDiff(project, id, {
        by: opts.by,
        ...(opts.accept === undefined ? {} : { accept: opts.accept }),
        ...(opts.note === undefined ? {} : { note: opts.note }),
      });
      if (globalFlags(cmd).json) return sayJson(a);
      say(
        `approved diff ${id} by ${a.approvedBy}${a.accepted.length > 0 ? `, accepting ${a.accepted.join(", ")}` : ""} (approval ${a.id}, good for one promotion)`,
      );
      say(`next: \`airlock promote ${id.slice(0, 12)} --dry-run\`, then without --dry-run`);
    });

  program
    .command("promote <diff>")
    .description("apply an approved diff to production in one transaction, with pre-image backup and an audit entry")
    .option("--to <url>", "the production database (default: PROD_DATABASE_URL)")
    .option("--dry-run", "do everything, then roll back: shows what would change and any conflict")
    .option("--rekey", "rows inserted into serial/identity-keyed tables get fresh keys from production's sequences; foreign keys among them follow")
    .option("--by <name>", "who promotes (default: the OS user)")
    .addHelpText(
      "after",
      "\nNeeds AIRLOCK_SECRET: the diff's and the approval's MACs must hold. An approval authorises one promotion, recorded in production\n(airlock.used_approvals); a dry run does not use it up, and after a rollback the diff needs a new approval. Every attempt\nis in the staging audit trail; a refusal that reached production is also recorded there, and its message says what it wrote.\n\nExit codes: 0 promoted, 1 error (production unchanged), 2 refused (not approved, approval used or for another diff, a MAC that\ndoes not hold, conflict; production's data and schema unchanged).\n\nExample:\n  airlock promote 3f9a2c1b --dry-run && airlock promote 3f9a2c1b",
    )
    .action(async (idArg: string, opts: { to?: string; dryRun?: boolean; rekey?: boolean; by?: string }, cmd: Command) => {
      const project = await projectFor(cmd);
      resolveDiffId(project, idArg); // the diff first, then production: in the order a user reads them
      const to = productionTarget(opts.to, "to");
      const r = await withProgress(!globalFlags(cmd).json, "promote", (bar) =>
        promoteDiff(project, idArg, {
          to,
          secret: process.env.AIRLOCK_SECRET,
          ...(opts.dryRun === true ? { dryRun: true } : {}),
          ...(opts.rekey === true ? { rekey: true } : {}),
          by: opts.by ?? defaultActor(),
          onProgress: promotePhases(bar, opts.dryRun === true),
        }),
      );
      if (globalFlags(cmd).json) return sayJson(r);
      const s = r.summary;
      if (r.dryRun)
        say(
          `dry run of diff ${r.diffId.slice(0, 12)}: would apply ${countsText(s)} without conflict; rolled back, production unchanged (approval ${r.approvalId} not used up)`,
        );
      else {
        say(
          `promoted diff ${r.diffId.slice(0, 12)} as ${r.promotionId}: ${countsText(s)}${r.rekeyed > 0 ? ` (${plural(r.rekeyed, "inserted row")} re-keyed)` : ""}; ${r.confirmed ? "read back and confirmed" : "READ-BACK DID NOT MATCH: check production"}`,
        );
        say(`undo with: airlock rollback ${r.promotionId}`);
        if (!r.confirmed) process.exitCode = 1;
      }
    });

  program
    .command("rollback <promotion>")
    .description("undo a promotion in one transaction from the pre-images it saved in production")
    .option("--to <url>", "the production database (default: PROD_DATABASE_URL)")
    .option("--by <name>", "who rolls back (default: the OS user)")
    .addHelpText(
      "after",
      "\nRefused (exit 2) when a row the promotion wrote changed since, or it was rolled back already.\n\nExample:\n  airlock rollback p-20261124101500-3fa2c1",
    )
    .action(async (promotion: string, opts: { to?: string; by?: string }, cmd: Command) => {
      const project = await projectFor(cmd);
      checkPromotionId(promotion); // the promotion first, then production: in the order a user reads them
      const to = productionTarget(opts.to, "to");
      const r = await withProgress(!globalFlags(cmd).json, "rollback", (bar) =>
        rollbackPromotion(project, promotion, {
          to,
          by: opts.by ?? defaultActor(),
          ...(process.env.AIRLOCK_SECRET === undefined ? {} : { secret: process.env.AIRLOCK_SECRET }),
          onProgress: rollbackPhases(bar),
        }),
      );
      if (globalFlags(cmd).json) return sayJson(r);
      say(
        `rolled back ${r.promotionId}: ${plural(r.restored, "row")} restored; ${r.schemaStatements === 0 ? "no schema changes to reverse" : `schema changes reversed (${plural(r.schemaStatements, "statement")})`}`,
      );
    });
}
