/**
 * Runs one Airlock step in its own process and prints what it cost as JSON
 * ({ ms, maxRssMb, ...facts }), so the benchmark can measure each step's
 * peak memory apart from the others. Usage: tsx bench/step.ts <step> <json args>
 */
import { parseConfig } from "../src/config/config.ts";
import { loadProject } from "../src/config/load.ts";
import { parseTarget } from "../src/pg/connect.ts";
import { withClient } from "../src/pg/connect.ts";
import { captureSnapshot } from "../src/snapshot/capture.ts";
import type { BackendKind } from "../src/staging/backend.ts";
import { createSession, agentConnection } from "../src/staging/sessions.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { diffSession } from "../src/diff/run-diff.ts";
import { promoteDiff } from "../src/promote/promote.ts";

const [step, rawArgs] = process.argv.slice(2);
const args = JSON.parse(rawArgs ?? "{}") as Record<string, string>;
const started = performance.now();
let facts: Record<string, unknown> = {};

switch (step) {
  case "capture": {
    const project = await loadProject({ dir: args.project! });
    const m = await captureSnapshot({
      source: parseTarget(args.url!),
      secret: args.secret!,
      rules: parseConfig({ masking: { rules: DEMO_MASKING_RULES } }).masking.rules,
      snapshotsDir: project.statePath("snapshots"),
      statementTimeoutMs: 3_600_000,
      lockTimeoutMs: 5_000,
      sampleSize: 200,
    });
    facts = { snapshot: m.id, rows: m.tables.reduce((n, t) => n + t.rows, 0), leakScanMs: m.leakScan.elapsedMs };
    break;
  }
  case "up": {
    // args.backend picks the backend as `airlock up --backend` does; args.image is staging.docker.image.
    const loaded = await loadProject({ dir: args.project! });
    const { staging } = loaded.config;
    const project =
      args.image === undefined
        ? loaded
        : { ...loaded, config: { ...loaded.config, staging: { ...staging, docker: { ...staging.docker, image: args.image } } } };
    const s = await createSession(project, {
      snapshotId: args.snapshot!,
      name: args.name!,
      ...(args.backend === undefined ? {} : { backend: args.backend as BackendKind }),
    });
    // "Ready" means the agent can connect and query its work database.
    await withClient(agentConnection(project, s.id).target, { step: "bench", searchPath: "public" }, (c) => c.query("SELECT 1"));
    facts = { session: s.id };
    break;
  }
  case "diff": {
    const project = await loadProject({ dir: args.project! });
    const r = await diffSession(project, args.session!, { secret: args.secret! });
    if (!r.diff.verification.verified) throw new Error("the benchmark's diff did not verify");
    facts = { diff: r.id, summary: r.diff.summary, hazards: r.diff.hazards.map((h) => h.code) };
    break;
  }
  case "promote": {
    const project = await loadProject({ dir: args.project! });
    const r = await promoteDiff(project, args.diff!, { to: parseTarget(args.url!), secret: args.secret!, by: "bench" });
    facts = { promotion: r.promotionId, confirmed: r.confirmed };
    break;
  }
  default:
    throw new Error(`unknown step ${step}`);
}
process.stdout.write(`${JSON.stringify({ ms: performance.now() - started, maxRssMb: process.resourceUsage().maxRSS / 1024, ...facts })}\n`);
