/**
 * `airlock audit [--to <url>] [--verify]`: the audit trail, staging side
 * (.airlock/audit.jsonl) and, with --to, production side (airlock.audit_log);
 * --verify checks both keyed chains and the anchors between them.
 */
import type { Command } from "commander";
import type { AuditEntry } from "../src/audit/chain.ts";
import { assertTrailsIntact, auditTrails, verifyAudit } from "../src/audit/verify.ts";
import { plural } from "../src/format/plural.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson } from "./output.ts";

function line(e: AuditEntry): string {
  const ids = ["session", "snapshot", "diff", "approval", "promotion"]
    .filter((k) => typeof e.details[k] === "string")
    .map((k) => `${k}=${k === "diff" ? String(e.details[k]).slice(0, 12) : String(e.details[k])}`);
  return `${String(e.seq).padStart(4)}  ${e.at}  ${e.actor.padEnd(12)} ${e.action.padEnd(16)} ${ids.join(" ")}`;
}

/** Registers the command. */
export function registerAudit(program: Command): void {
  program
    .command("audit")
    .description("print the audit trails and prove them intact (--verify): keyed chains, heads, and the anchors between staging and production")
    .option("--to <url>", "also read production's airlock.audit_log (default: PROD_DATABASE_URL when --verify)")
    .option("--verify", "check both keyed chains and their anchors (needs AIRLOCK_SECRET); exit 1 naming every entry edited, removed, reordered or missing")
    .addHelpText(
      "after",
      `
Every entry is an HMAC chain link under a key derived from AIRLOCK_SECRET.
A production entry records the staging trail's head when it was written;
the staging entry written after it records the production entry's hash. So
deleting or rewriting either side, dropping airlock.audit_log or renaming the
airlock schema, or deleting .airlock/audit.jsonl with its head, is detected
whenever the other side still exists. Without --to or PROD_DATABASE_URL,
production is not checked, and the output says so.

Example:
  airlock audit --verify --to "$PROD_DATABASE_URL"`,
    )
    .action(async (opts: { to?: string; verify?: boolean }, cmd: Command) => {
      const project = await projectFor(cmd);
      // Verifying reads production from --to, else PROD_DATABASE_URL; listing reads it only when --to names it.
      const report = opts.verify === true ? await verifyAudit(project, { to: opts.to }) : await auditTrails(project, { to: opts.to });
      if (globalFlags(cmd).json) sayJson(report);
      else {
        say(`staging trail, ${report.staging.trail} (${plural(report.staging.entries.length, "entry", "entries")}):`);
        for (const e of report.staging.entries) say(line(e));
        if (report.production !== undefined) {
          say(
            `production trail, airlock.audit_log of ${report.production.display} (${report.production.exists ? plural(report.production.entries.length, "entry", "entries") : "none: no airlock.audit_log"}):`,
          );
          for (const e of report.production.entries) say(line(e));
        }
        if (report.unauthenticated.length > 0) {
          say(`unauthenticated events, not part of either trail (${report.unauthenticated.length}):`);
          for (const e of report.unauthenticated) say(`   -  ${e.at}  ${e.actor.padEnd(12)} ${e.action.padEnd(16)} ${e.reason}`);
        }
        for (const n of report.notes) say(`note: ${n}`);
      }
      if (opts.verify !== true) return;
      assertTrailsIntact(report);
      if (!globalFlags(cmd).json) {
        const prod = report.production;
        say(
          `verified: ${plural(report.staging.entries.length, "staging entry", "staging entries")}${prod === undefined ? "" : ` and ${plural(prod.entries.length, "production entry", "production entries")}`} form intact keyed chains${report.anchors === undefined ? "" : `, with ${plural(report.anchors.checked, "anchor")} between them holding`}${report.productionChecked ? "" : "; production was NOT checked"}`,
        );
      }
    });
}
