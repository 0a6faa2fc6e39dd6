/**
 * Airlock's library: each pipeline step is a function first (what the CLI
 * in scripts/ calls, and what tests call).
 */
export { AirlockError, isAirlockError, formatError, EXIT_OK, EXIT_ERROR, EXIT_REFUSED } from "./errors.ts";
export { defineConfig, parseConfig, type AirlockConfig, type AirlockConfigInput } from "./config/config.ts";
export { loadProject, type Project } from "./config/load.ts";
export { openClient, openPool, withClient, parseTarget, formatUrl, PINNED_SETTINGS, type PgTarget } from "./pg/connect.ts";
export { createCluster, openCluster, startCluster, stopCluster, destroyCluster, ensureCluster, clusterStatus, type LocalCluster } from "./pg/cluster.ts";
export { findPgBinaries, type PgBinaries } from "./pg/binaries.ts";
