/**
 * A throwaway Airlock project for a test file: its own directory (which the
 * server user can enter), an optional airlock.config.ts, and removal of the
 * directory together with the staging cluster the tests started in it.
 */
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Project, loadProject, localClusterOptions } from "../../src/config/load.ts";
import { destroyCluster, openCluster } from "../../src/pg/cluster.ts";
import type { PgTarget } from "../../src/pg/connect.ts";
import { type CaptureOptions, captureSnapshot } from "../../src/snapshot/capture.ts";
import type { SnapshotManifest } from "../../src/snapshot/store.ts";
import { testClusterDir } from "./cluster.ts";

/** Creates and loads a project; `config` is the source of its airlock.config.ts, if any. */
export async function createTestProject(name: string, config?: string): Promise<Project> {
  const dir = testClusterDir(name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  if (config !== undefined) writeFileSync(join(dir, "airlock.config.ts"), config);
  return loadProject({ dir });
}

/** Destroys the project's staging cluster (if one was started) and deletes the project. */
export async function removeTestProject(project: Project | undefined): Promise<void> {
  if (project === undefined) return;
  const staging = openCluster(localClusterOptions(project));
  if (staging !== undefined) await destroyCluster(staging);
  rmSync(project.dir, { recursive: true, force: true });
}

/** Captures `source` into the project's snapshots with the timeouts and sample size every test uses. */
export function captureInto(project: Project, source: PgTarget, secret: string, rules: CaptureOptions["rules"] = {}): Promise<SnapshotManifest> {
  return captureSnapshot({
    source,
    secret,
    rules,
    snapshotsDir: project.statePath("snapshots"),
    statementTimeoutMs: 60_000,
    lockTimeoutMs: 5_000,
    sampleSize: 200,
  });
}
