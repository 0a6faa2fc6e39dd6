/**
 * `airlock audit --verify` as a library function: both keyed chains, each
 * against its head, and the anchors between them (anchors.ts). What it
 * cannot see it says: without a production database, production was not
 * checked, and a staging trail deleted as a whole leaves nothing local to
 * compare with.
 */
import type { Project } from "../config/load.ts";
import { requireSecret, secretFromEnv } from "../config/keys.ts";
import { optionalProductionTarget } from "../config/production.ts";
import { AirlockError } from "../errors.ts";
import { type PgTarget, parseTarget, withClient } from "../pg/connect.ts";
import { type ProductionLog, productionIdentity, productionTrail, readProductionLog, verifyProductionLog } from "../promote/production-schema.ts";
import { checkAuditPrivileges } from "../promote/privileges.ts";
import { type AnchorCheck, checkAnchors, productionAnchorOf } from "./anchors.ts";
import type { AuditEntry, ChainCheck } from "./chain.ts";
import { type UnauthenticatedEvent, readJournal, readUnauthenticated, stagingTrailId, verifyJournal } from "./journal.ts";

/** Both trails as read, and what verifying them found. */
export interface TrailsReport {
  readonly staging: { readonly trail: string; readonly entries: AuditEntry[]; readonly check?: ChainCheck };
  /** Events recorded without AIRLOCK_SECRET or under another one: kept apart, never verified. */
  readonly unauthenticated: UnauthenticatedEvent[];
  readonly production?: {
    readonly database: string;
    readonly display: string;
    readonly exists: boolean;
    readonly entries: AuditEntry[];
    readonly check?: ChainCheck;
  };
  readonly anchors?: AnchorCheck;
  /** Whether a production database was read at all. */
  readonly productionChecked: boolean;
  /** What is missing or altered, each naming its trail; empty when intact (or not verified). */
  readonly problems: readonly string[];
  /** What was not or could not be checked. */
  readonly notes: readonly string[];
}

async function readProduction(target: PgTarget): Promise<{ database: string; display: string; log: ProductionLog; schema: boolean }> {
  return withClient(target, { step: "audit", readOnly: true }, async (c) => {
    const identity = await productionIdentity(c, target);
    // Read only: the audit role needs USAGE on the airlock schema and SELECT on its two audit tables, never to create them.
    const access = await checkAuditPrivileges(c);
    return { ...identity, schema: access.schema, log: access.schema ? await readProductionLog(c) : { exists: false, entries: [], head: null } };
  });
}

/** Reads the staging trail and, given a target (only then), production's; with `verify`, checks chains, heads and anchors. */
export async function auditTrails(project: Project, options: { to?: PgTarget | string; verify?: boolean; secret?: string }): Promise<TrailsReport> {
  const secret = options.verify === true ? requireSecret(secretFromEnv(options.secret), "airlock audit --verify") : undefined;
  const trail = stagingTrailId(project);
  const entries = readJournal(project);
  const stagingCheck = secret === undefined ? undefined : verifyJournal(project, secret);
  const to = typeof options.to === "string" ? (options.to === "" ? undefined : parseTarget(options.to)) : options.to;
  const read = to === undefined ? undefined : await readProduction(to);
  const productionCheck = read === undefined || secret === undefined ? undefined : verifyProductionLog(read.log, secret);
  const production =
    read === undefined
      ? undefined
      : {
          database: read.database,
          display: read.display,
          exists: read.log.exists,
          entries: read.log.entries,
          ...(productionCheck === undefined ? {} : { check: productionCheck }),
        };
  const staging = { trail, entries, ...(stagingCheck === undefined ? {} : { check: stagingCheck }) };
  const unauthenticated = readUnauthenticated(project);
  const notes: string[] = [];
  if (unauthenticated.length > 0)
    notes.push(
      `${unauthenticated.length} event${unauthenticated.length === 1 ? " was" : "s were"} recorded without AIRLOCK_SECRET or under another one (audit.unauthenticated.jsonl): listed, not authenticated`,
    );
  if (secret === undefined)
    return { staging, unauthenticated, ...(production === undefined ? {} : { production }), productionChecked: read !== undefined, problems: [], notes };

  const problems: string[] = [];
  if (stagingCheck !== undefined && !stagingCheck.ok) problems.push(`staging audit trail: ${stagingCheck.problem}`);
  if (productionCheck !== undefined && !productionCheck.ok) problems.push(`production audit trail (${read!.display}): ${productionCheck.problem}`);
  let anchors: AnchorCheck | undefined;
  if (read === undefined) {
    const anchored = entries.filter((e) => productionAnchorOf(e) !== undefined).length;
    notes.push(
      `production was not checked (no --to and no PROD_DATABASE_URL)${anchored > 0 ? `: ${anchored} staging entries anchored in production were not compared with it` : ""}; a staging trail deleted as a whole is only detected against production`,
    );
  } else {
    anchors = checkAnchors(entries, trail, productionTrail(read, read.log));
    problems.push(...anchors.problems.map((p) => `anchors: ${p}`));
    if (!read.schema) notes.push(`${read.display} has no airlock schema yet: nothing has been promoted to it (or refused there), so it holds no audit trail`);
    else if (!read.log.exists) notes.push(`${read.display} has no airlock.audit_log`);
    if (anchors.otherTrails.length > 0)
      notes.push(`production entries from other staging trails (${anchors.otherTrails.join(", ")}) were checked as a chain, not against those trails`);
    if (anchors.otherDatabases.length > 0) notes.push(`the staging trail also records entries in ${anchors.otherDatabases.join(", ")}: check those with --to`);
  }
  return {
    staging,
    unauthenticated,
    ...(production === undefined ? {} : { production }),
    ...(anchors === undefined ? {} : { anchors }),
    productionChecked: read !== undefined,
    problems,
    notes,
  };
}

/** Options of verifyAudit. */
export interface VerifyAuditOptions {
  /** Production, whose airlock.audit_log is checked too (default: PROD_DATABASE_URL; without either it is not checked, and the report says so). */
  readonly to?: PgTarget | string;
  /** AIRLOCK_SECRET (default: the environment); verifying needs it. */
  readonly secret?: string;
}

/**
 * `airlock audit --verify`: reads both trails (production's from `to`, else PROD_DATABASE_URL) and checks their
 * keyed chains, heads and anchors. The report's `problems` name whatever is missing or altered; `assertTrailsIntact`
 * turns them into the error the CLI exits with.
 */
export async function verifyAudit(project: Project, options: VerifyAuditOptions = {}): Promise<TrailsReport> {
  const to = optionalProductionTarget(options.to);
  return auditTrails(project, { ...(to === undefined ? {} : { to }), verify: true, ...(options.secret === undefined ? {} : { secret: options.secret }) });
}

/** Throws AIRLOCK_AUDIT_TAMPERED, listing every problem, unless a verified report found the trails intact. */
export function assertTrailsIntact(report: TrailsReport): void {
  if (report.problems.length === 0) return;
  throw new AirlockError("AIRLOCK_AUDIT_TAMPERED", `the audit trails are not intact:\n${report.problems.map((p) => `  - ${p}`).join("\n")}`, {
    hint: "the trails were edited, cut or deleted outside Airlock; compare them with your backups",
    details: { problems: report.problems },
  });
}
