/**
 * Airlock's library, what `import … from "airlock"` gives: every pipeline
 * step as a function, with its types. The CLI in scripts/ only parses flags,
 * calls these and prints; every audit entry is written here, so a program
 * calling them leaves the same trail as the CLI.
 *
 *   loadProject → takeSnapshot → createSession / runAgent → diffSession →
 *   approveDiff → promoteDiff → verifyAudit → rollbackPromotion
 */
export { AirlockError, isAirlockError, formatError, EXIT_OK, EXIT_ERROR, EXIT_REFUSED } from "./errors.ts";

// Configuration: `export default defineConfig({ … })` in airlock.config.ts, and the project it configures.
export { defineConfig, parseConfig, type AirlockConfig, type AirlockConfigInput } from "./config/config.ts";
export { loadProject, type Project } from "./config/load.ts";
export { productionTarget, optionalProductionTarget, type ProductionInput } from "./config/production.ts";

// Capture: a masked, leak-scanned snapshot of production. takeSnapshot is the project's step (config, audit entry);
// captureSnapshot the same capture into any directory, with no project and so no audit entry.
export { takeSnapshot, proposeSnapshotRules, captureSettings, type TakeSnapshotOptions, type CaptureSettings } from "./snapshot/take.ts";
export { captureSnapshot, initRules, type CaptureOptions, type CaptureProgress, type InitRulesProposal } from "./snapshot/capture.ts";
export { listSnapshots, readManifest, verifySnapshot, removeSnapshot, snapshotsDir, type SnapshotManifest, type ManifestTable } from "./snapshot/store.ts";

// Sessions: disposable staging databases cloned from a snapshot, and an agent run in one.
export {
  createSession,
  destroySession,
  listSessions,
  readSession,
  gcSessions,
  agentConnection,
  sessionLimits,
  type SessionRecord,
  type UpOptions,
  type SessionProgress,
  type SessionLimitsView,
} from "./staging/sessions.ts";
export type { ProvisionProgress } from "./staging/backend.ts";
export { runAgent, type RunOptions, type RunResult } from "./staging/run.ts";
export { defaultSandbox, type SandboxKind } from "./staging/sandbox.ts";

// Diff: what a session changed, replayed and verified; diffSession writes it (and its audit entry), computeDiff only computes.
export { diffSession, summaryLines, type DiffResult, type DiffSessionOptions } from "./diff/run-diff.ts";
export { computeDiff, type DiffProgress } from "./diff/diff.ts";
export { readDiff } from "./diff/store.ts";
export type { Diff, Hazard, HazardSeverity, RowChange, TableChanges, Verification } from "./diff/types.ts";

// Approve, promote, rollback.
export { approveDiff, type Approval, type ApproveOptions } from "./promote/approval.ts";
export { promoteDiff, type PromoteOptions, type PromoteProgress, type PromotionResult } from "./promote/promote.ts";
export { rollbackPromotion, type RollbackProgress, type RollbackResult } from "./promote/rollback.ts";

// Audit: both trails read and verified (keyed chains, heads, anchors between staging and production).
export { verifyAudit, auditTrails, assertTrailsIntact, type VerifyAuditOptions, type TrailsReport } from "./audit/verify.ts";
export { readJournal } from "./audit/journal.ts";
export type { AuditEntry, AuditEvent } from "./audit/chain.ts";

// Postgres: connections and the embedded cluster.
export { openClient, openPool, withClient, parseTarget, formatUrl, PINNED_SETTINGS, type PgTarget } from "./pg/connect.ts";
export { createCluster, openCluster, startCluster, stopCluster, destroyCluster, ensureCluster, clusterStatus, type LocalCluster } from "./pg/cluster.ts";
export { findPgBinaries, type PgBinaries } from "./pg/binaries.ts";
