/**
 * Test clusters: each test file starts its own real Postgres cluster with the
 * same code users run (src/pg/cluster.ts), under the system temp directory,
 * and destroys it when done.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LocalCluster, destroyCluster, ensureCluster } from "../../src/pg/cluster.ts";
import { type PgTarget, quoteIdent, withClient } from "../../src/pg/connect.ts";

/** Where test clusters live; the server user must be able to pass through it. */
export function testRoot(): string {
  const root = join(tmpdir(), "airlock-tests");
  mkdirSync(root, { recursive: true });
  chmodSync(root, 0o755);
  return root;
}

/** A fresh, unique directory for one test cluster. */
export function testClusterDir(name: string): string {
  return join(testRoot(), `${name}-${process.pid}-${randomBytes(3).toString("hex")}`);
}

/** A running cluster owned by one test file. */
export interface TestCluster {
  readonly cluster: LocalCluster;
  /** Creates an empty database and returns a superuser target for it. */
  createDatabase(name: string): Promise<PgTarget>;
  /** Stops the cluster and removes its directory. */
  close(): Promise<void>;
}

/** Creates and starts a cluster for one test file. */
export async function startTestCluster(name: string): Promise<TestCluster> {
  const cluster = await ensureCluster({ dir: testClusterDir(name) });
  return {
    cluster,
    async createDatabase(db: string) {
      await withClient(cluster.adminTarget(), { step: "test", searchPath: "public" }, (c) => c.query(`CREATE DATABASE ${quoteIdent(db)}`));
      return cluster.adminTarget(db);
    },
    close: () => destroyCluster(cluster),
  };
}
