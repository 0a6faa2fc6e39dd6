/**
 * `airlock audit [--to <url>] [--verify]`: the audit trail, staging side
 * (.airlock/audit.jsonl) and, with --to, production side (airlock.audit_log).
 */
import type { Command } from "commander";
import type { AuditEntry, ChainCheck } from "../src/audit/chain.ts";
import { readJournal, verifyJournal } from "../src/audit/journal.ts";
import { AirlockError } from "../src/errors.ts";
import { parseTarget, withClient } from "../src/pg/connect.ts";
import { readProductionLog, verifyProductionLog } from "../src/promote/production-schema.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson } from "./output.ts";

function line(e: AuditEntry): string {
  const ids = ["session", "snapshot", "diff", "promotion"].filter((k) => typeof e.details[k] === "string").map((k) => `${k}=${String(e.details[k]).slice(0, 16)}`);
  return `${String(e.seq).padStart(4)}  ${e.at}  ${e.actor.padEnd(12)} ${e.action.padEnd(16)} ${ids.join(" ")}`;
}

/** Registers the command. */
export function registerAudit(program: Command): void {
  program
    .command("audit")
    .description("print the audit trail and prove its hash chain intact (--verify)")
    .option("--to <url>", "also read production's airlock.audit_log (default: PROD_DATABASE_URL when --verify)")
    .option("--verify", "check the hash chains; exit 1 if any entry was edited, removed or reordered")
    .action(async (opts: { to?: string; verify?: boolean }, cmd: Command) => {
      const project = await projectFor(cmd);
      const staging = { entries: readJournal(project), check: verifyJournal(project) };
      const url = opts.to ?? (opts.verify === true ? process.env.PROD_DATABASE_URL : undefined);
      let production: { entries: AuditEntry[]; check: ChainCheck } | undefined;
      if (url !== undefined && url !== "") {
        production = await withClient(parseTarget(url), { step: "audit", readOnly: true }, async (c) => {
          const log = await readProductionLog(c);
          return { entries: log.entries, check: verifyProductionLog(log) };
        });
      }
      if (globalFlags(cmd).json) sayJson({ staging, ...(production === undefined ? {} : { production }) });
      else {
        say(`staging trail (${staging.entries.length} entries):`);
        for (const e of staging.entries) say(line(e));
        if (production !== undefined) {
          say(`production trail, airlock.audit_log (${production.entries.length} entries):`);
          for (const e of production.entries) say(line(e));
        }
      }
      if (opts.verify === true) {
        const broken = [["staging", staging.check], ...(production === undefined ? [] : [["production", production.check]])].filter(([, c]) => !(c as ChainCheck).ok) as Array<[string, Extract<ChainCheck, { ok: false }>]>;
        if (broken.length > 0) {
          throw new AirlockError("AIRLOCK_AUDIT_TAMPERED", broken.map(([where, c]) => `${where} audit trail: ${c.problem}`).join("; "), { hint: "the trail was edited outside Airlock; compare it with your backups" });
        }
        if (!globalFlags(cmd).json) say(`verified: ${staging.check.entries} staging entries${production === undefined ? "" : ` and ${production.check.entries} production entries`} form intact hash chains`);
      }
    });
}
