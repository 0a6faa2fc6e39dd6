/**
 * The demo story (what `npm run demo` runs): a local "production" with the
 * demo dataset, a masked snapshot, an agent that repeats the gallery
 * incident inside its session, the diff that exposes it, a refused
 * promotion, a second session with only the legitimate fix promoted with
 * approval, the audit trail, and a rollback. Every claim it prints is a
 * check; the demo passes only if all of them held. Its state is its own,
 * apart from the project's (state.ts).
 */
import { fileURLToPath } from "node:url";
import { auditTrails } from "../../src/audit/verify.ts";
import { parseConfig } from "../../src/config/config.ts";
import { type Project, localClusterOptions } from "../../src/config/load.ts";
import { countsText, diffSession } from "../../src/diff/run-diff.ts";
import { isAirlockError } from "../../src/errors.ts";
import { plural } from "../../src/format/plural.ts";
import { type LocalCluster, ensureCluster, openCluster, serverProcesses, stopCluster } from "../../src/pg/cluster.ts";
import { type PgTarget, makeTarget, query, withClient } from "../../src/pg/connect.ts";
import { approveDiff } from "../../src/promote/approval.ts";
import { readProductionLog } from "../../src/promote/production-schema.ts";
import { promoteDiff } from "../../src/promote/promote.ts";
import { rollbackPromotion } from "../../src/promote/rollback.ts";
import { captureSnapshot } from "../../src/snapshot/capture.ts";
import { defaultSandbox } from "../../src/staging/sandbox.ts";
import { runAgent } from "../../src/staging/run.ts";
import { seedDemo } from "./index.ts";
import { DEMO_MASKING_RULES } from "./masking.ts";
import { demoProject, resetDemoState } from "./state.ts";

// The demo's production is fake data; a fixed secret keeps its story the same every run where no AIRLOCK_SECRET is set.
export const DEMO_SECRET = "airlock-demo-secret-not-for-real-data";

/**
 * The one secret the demo keys everything with (masking, diffs, approvals, both audit trails): AIRLOCK_SECRET where
 * it is set, else the demo's own, put in the environment for the steps that read it from there (a session's audit
 * entries). The demo's audit trail starts afresh every run, so either holds from its first entry.
 */
function demoSecret(): string {
  if (process.env.AIRLOCK_SECRET === undefined || process.env.AIRLOCK_SECRET === "") process.env.AIRLOCK_SECRET = DEMO_SECRET;
  return process.env.AIRLOCK_SECRET;
}
const READER_PASSWORD = "demo-reader-password";
const AGENT = fileURLToPath(new URL("./agent.mjs", import.meta.url));
const TABLES = ["gallery_images", "guests", "bookings", "payments", "reviews", "booking_events"];

/** One check the demo shows. */
export interface DemoCheck {
  readonly step: string;
  readonly name: string;
  readonly ok: boolean;
}

/** How the demo talks to its caller. */
export interface DemoIo {
  heading(text: string): void;
  info(text: string): void;
  /** Where the agent's own output goes ("inherit" prints it). */
  readonly agentOutput: "inherit" | "ignore";
}

/** What the demo found. */
export interface DemoResult {
  readonly ok: boolean;
  readonly checks: readonly DemoCheck[];
  readonly incidentDiff: string;
  readonly fixDiff: string;
  readonly promotion: string;
  readonly elapsedMs: number;
  /** The demo's own state directory (`.airlock/demo`): its snapshots, sessions, diffs, audit trail and clusters. */
  readonly stateDir: string;
}

async function checksums(target: PgTarget): Promise<Record<string, string>> {
  return withClient(target, { step: "demo", searchPath: "public" }, async (c) => {
    const out: Record<string, string> = {};
    for (const t of TABLES)
      out[t] = (
        await query<{ h: string }>(
          c,
          `SELECT count(*) || ':' || md5(coalesce(string_agg(to_jsonb(r)::text, E'\\n' ORDER BY to_jsonb(r)::text), '')) AS h FROM ${t} r`,
        )
      ).rows[0]!.h;
    return out;
  });
}

const same = (a: Record<string, string>, b: Record<string, string>) => JSON.stringify(a) === JSON.stringify(b);

/** Runs the whole story in the demo's own state under `userProject`'s; stops every server it started unless keepRunning. */
export async function runDemo(userProject: Project, options: { scale: number; keepRunning?: boolean }, io: DemoIo): Promise<DemoResult> {
  const started = Date.now();
  // Everything below works in the demo's state directory, never in the project's own.
  const project = demoProject(userProject);
  const secret = demoSecret();
  const checks: DemoCheck[] = [];
  let step = "";
  const check = (name: string, ok: boolean) => {
    checks.push({ step, name, ok });
    io.info(`  ${ok ? "ok  " : "FAIL"} ${name}`);
  };
  const heading = (text: string) => {
    step = text;
    io.heading(text);
  };
  const started_: LocalCluster[] = [];
  let incidentDiff = "";
  let fixDiff = "";
  let promotion = "";
  try {
    heading('1. A local "production" with the demo dataset');
    // What an earlier demo left goes first (its clusters stopped): the story starts from scratch every time.
    await resetDemoState(project);
    const dir = project.statePath("production");
    const prodCluster = await ensureCluster({ dir, settings: { max_connections: 100 } });
    started_.push(prodCluster);
    await withClient(prodCluster.adminTarget(), { step: "demo", searchPath: "public" }, (c) => query(c, "CREATE DATABASE production"));
    const prod = prodCluster.adminTarget("production");
    const seeded = await seedDemo({ target: prod, scale: options.scale });
    await withClient(prod, { step: "demo", searchPath: "public" }, async (c) => {
      await query(c, `CREATE ROLE demo_reader LOGIN PASSWORD '${READER_PASSWORD}'`);
      await query(c, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO demo_reader");
      await query(c, "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO demo_reader");
    });
    io.info(
      `Postgres ${prodCluster.binaries.version} on 127.0.0.1:${prodCluster.port}: ${Object.entries(seeded.tables)
        .map(([t, n]) => `${t} ${n}`)
        .join(", ")}`,
    );
    const original = await checksums(prod);

    heading("2. A masked snapshot, taken by a role that can only read");
    const reader = makeTarget({ host: "127.0.0.1", port: prodCluster.port, database: "production", user: "demo_reader", password: READER_PASSWORD });
    const manifest = await captureSnapshot({
      source: reader,
      secret,
      rules: parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules,
      snapshotsDir: project.statePath("snapshots"),
      statementTimeoutMs: project.config.capture.statementTimeout,
      lockTimeoutMs: project.config.capture.lockTimeout,
      sampleSize: project.config.masking.sampleSize,
    });
    io.info(
      `snapshot ${manifest.id}: ${manifest.tables.reduce((n, t) => n + t.columns.filter((c) => c.rule !== "keep").length, 0)} columns masked, in ${manifest.elapsedMs} ms`,
    );
    check(`leak scan: none of ${manifest.leakScan.originalsChecked} original values is in the snapshot`, manifest.leakScan.ok);

    heading("3. The agent repeats the incident inside its own session (airlock run)");
    const prodConnections = async () =>
      (
        await withClient(prodCluster.adminTarget(), { step: "demo", searchPath: "public" }, (c) =>
          query<{ n: number }>(c, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend'"),
        )
      ).rows[0]!.n;
    const connectionsBefore = await prodConnections();
    // The agent runs in the sandbox where this machine has one (bubblewrap); the demo says which.
    const sandbox = defaultSandbox() ?? "none";
    io.info(
      sandbox === "none"
        ? "no sandbox on this machine (bubblewrap is not installed): the demo agent runs unsandboxed"
        : `the agent runs in a ${sandbox} sandbox: the demo's state directory and .env hidden, the system read-only`,
    );
    const incident = await runAgent(project, [process.execPath, AGENT, "incident"], {
      snapshotId: manifest.id,
      name: "demo-incident",
      stdio: io.agentOutput,
      sandbox,
    });
    check("the agent finished", incident.exitCode === 0);
    check("production untouched while the agent ran (checksum of every table)", same(await checksums(prod), original));
    check(
      `production saw no connection from the agent (${await prodConnections()} client connections, as before: ${connectionsBefore})`,
      (await prodConnections()) === connectionsBefore,
    );
    const flood = incident.output.match(/AGENT_RESULT (.*)/)?.[1];
    const { opened, refused } = flood === undefined ? { opened: -1, refused: -1 } : (JSON.parse(flood) as { opened: number; refused: number });
    check(
      `its ~300 connections hit the session's limit of ${project.config.staging.connectionLimit}, not production (${opened} opened, ${refused} refused)`,
      opened >= 1 && opened < project.config.staging.connectionLimit && refused > 0,
    );

    heading("4. The promotion diff exposes what the agent did");
    const d1 = await diffSession(project, "demo-incident", { secret });
    incidentDiff = d1.id;
    io.info(`diff ${d1.id.slice(0, 12)}: ${countsText(d1.diff.summary)}; review: ${d1.dir}/review.html`);
    for (const h of d1.diff.hazards) io.info(`  ${h.severity.toUpperCase().padEnd(6)} ${h.code} ${h.object}: ${h.message}`);
    check("the diff is verified by replay", d1.diff.verification.verified);
    check(
      "bulk delete of gallery_images flagged as danger",
      d1.diff.hazards.some((h) => h.code === "BULK_DELETE" && h.severity === "danger" && h.object === "public.gallery_images"),
    );
    check(
      "the 282-row insert flagged as a large insert",
      d1.diff.hazards.some((h) => h.code === "LARGE_INSERT" && h.count === 282),
    );

    heading("5. Promoting it without approval is refused");
    const unapproved = await promoteDiff(project, d1.id, { to: prod, secret, by: "agent" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    check(
      "promote without approval exits 2 (AIRLOCK_NOT_APPROVED) and changes nothing",
      isAirlockError(unapproved, "AIRLOCK_NOT_APPROVED") && unapproved.exitCode === 2 && same(await checksums(prod), original),
    );
    const noAccept = (() => {
      try {
        approveDiff(project, d1.id, { by: "reviewer", secret });
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    check("approving it without accepting BULK_DELETE by name is refused", isAirlockError(noAccept, "AIRLOCK_HAZARD_NOT_ACCEPTED"));

    heading("6. A second session with only the legitimate fix: reviewed, approved, promoted");
    const fix = await runAgent(project, [process.execPath, AGENT, "fix"], { snapshotId: manifest.id, name: "demo-fix", stdio: io.agentOutput, sandbox });
    check("the agent finished", fix.exitCode === 0);
    const d2 = await diffSession(project, "demo-fix", { secret });
    fixDiff = d2.id;
    io.info(`diff ${d2.id.slice(0, 12)}: ${countsText(d2.diff.summary)}, hazards: ${d2.diff.hazards.map((h) => h.code).join(", ") || "none"}`);
    check("the fix's diff is verified and has no danger", d2.diff.verification.verified && !d2.diff.hazards.some((h) => h.severity === "danger"));
    approveDiff(project, d2.id, { by: "reviewer", note: "paid booking confirmed; index for the front desk", secret });
    const dry = await promoteDiff(project, d2.id, { to: prod, secret, by: "reviewer", dryRun: true });
    check("a dry run applies it without conflict and leaves production unchanged", dry.dryRun && same(await checksums(prod), original));
    const promoted = await promoteDiff(project, d2.id, { to: prod, secret, by: "reviewer" });
    promotion = promoted.promotionId;
    io.info(`promoted as ${promoted.promotionId}`);
    check("production holds the fix, read back after commit", promoted.confirmed);
    const afterPromotion = await checksums(prod);
    check(
      "only bookings changed in production",
      TABLES.every((t) => (t === "bookings") !== (afterPromotion[t] === original[t])),
    );

    heading("7. The audit trail");
    const log = await withClient(prod, { step: "demo", searchPath: "public" }, (c) => readProductionLog(c));
    const trails = await auditTrails(project, { to: prod, verify: true, secret });
    io.info(`production: ${log.entries.map((e) => e.action).join(", ")}; staging: ${plural(trails.staging.entries.length, "entry", "entries")}`);
    for (const p of trails.problems) io.info(`  ${p}`);
    check("both keyed audit trails verify, anchored to each other", trails.problems.length === 0 && (trails.anchors?.checked ?? 0) > 0);

    heading("8. One command rolls the promotion back");
    await rollbackPromotion(project, promoted.promotionId, { to: prod, by: "reviewer", secret });
    check("production equals its state before the promotion (checksum of every table)", same(await checksums(prod), original));
  } finally {
    // The demo's staging cluster is its own: stopped with the rest.
    const staging = openCluster(localClusterOptions(project));
    if (staging !== undefined) started_.push(staging);
    if (options.keepRunning !== true) for (const c of started_) await stopCluster(c).catch(() => undefined);
  }
  if (options.keepRunning !== true) {
    heading("9. Clean up");
    const left = started_.reduce((n, c) => n + serverProcesses(c).length, 0);
    check(`every server the demo started is stopped (${plural(left, "process", "processes")} left)`, left === 0);
  }
  return { ok: checks.every((c) => c.ok), checks, incidentDiff, fixDiff, promotion, elapsedMs: Date.now() - started, stateDir: project.statePath() };
}
