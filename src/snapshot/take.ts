/**
 * The snapshot step of a project (`airlock snapshot`): capture with the
 * project's masking rules and limits into its state directory, and the
 * audit entry that says it happened. `captureSnapshot` (capture.ts) is the
 * step without a project: it writes no audit entry, because it has no trail
 * to write to.
 */
import { defaultActor } from "../audit/chain.ts";
import { recordEvent } from "../audit/journal.ts";
import type { Project } from "../config/load.ts";
import { type ProductionInput, productionTarget } from "../config/production.ts";
import { type CaptureOptions, type CaptureProgress, type InitRulesProposal, captureSnapshot, initRules } from "./capture.ts";
import { type SnapshotManifest, snapshotsDir } from "./store.ts";

/** What capture takes from the project's configuration. */
export type CaptureSettings = Pick<CaptureOptions, "rules" | "allow" | "statementTimeoutMs" | "lockTimeoutMs" | "sampleSize">;

/** The capture settings of a project: masking rules and allowances, sample size, production's timeouts. */
export function captureSettings(project: Project): CaptureSettings {
  const c = project.config;
  return {
    rules: c.masking.rules,
    allow: c.masking.allow,
    statementTimeoutMs: c.capture.statementTimeout,
    lockTimeoutMs: c.capture.lockTimeout,
    sampleSize: c.masking.sampleSize,
  };
}

/** Options of takeSnapshot. */
export interface TakeSnapshotOptions {
  /** Production (default: PROD_DATABASE_URL). */
  readonly from?: ProductionInput;
  /** AIRLOCK_SECRET (default: the environment). */
  readonly secret?: string;
  /** Who takes it, for the audit trail (default: the OS user). */
  readonly actor?: string;
  readonly onProgress?: (e: CaptureProgress) => void;
}

/** Captures a masked snapshot of production into the project and records it in the staging audit trail. */
export async function takeSnapshot(project: Project, options: TakeSnapshotOptions = {}): Promise<SnapshotManifest> {
  const secret = options.secret ?? process.env.AIRLOCK_SECRET;
  const manifest = await captureSnapshot({
    source: productionTarget(options.from, "from"),
    secret,
    snapshotsDir: snapshotsDir(project.statePath()),
    ...captureSettings(project),
    ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
  });
  recordEvent(
    project,
    {
      actor: options.actor ?? defaultActor(),
      action: "snapshot",
      details: {
        snapshot: manifest.id,
        source: `${manifest.source.database}@${manifest.source.host}:${manifest.source.port}`,
        tables: manifest.tables.length,
        rulesHash: manifest.rulesHash,
      },
    },
    secret,
  );
  return manifest;
}

/**
 * `airlock snapshot --init-rules`: samples production (read-only) under the project's rules and proposes rules for
 * unruled personal data and allowances for leak-scan coincidences. Captures and records nothing.
 */
export function proposeSnapshotRules(
  project: Project,
  options: { readonly from?: ProductionInput; readonly secret?: string } = {},
): Promise<InitRulesProposal> {
  return initRules({ source: productionTarget(options.from, "from"), secret: options.secret ?? process.env.AIRLOCK_SECRET, ...captureSettings(project) });
}
