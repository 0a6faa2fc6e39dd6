/**
 * Where the demo keeps its state: `<stateDir>/demo/` of the project it runs
 * in (`.airlock/demo/`), a state directory of its own with its production
 * cluster, staging cluster, snapshots, sessions, diffs and audit trail. The
 * project's commands never look there, so nothing of the demo shows in
 * `airlock ls` or `airlock snapshot ls`, and the demo never touches the
 * project's own cluster or audit trail. Each run starts it afresh.
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { parseConfig } from "../../src/config/config.ts";
import { type Project, localClusterOptions } from "../../src/config/load.ts";
import { destroyCluster, openCluster } from "../../src/pg/cluster.ts";

/**
 * The demo's own project: the project's directory (the agent works there, as it would), the demo's state
 * directory, and the default configuration but for the machine's facts about its Postgres (`local`, without
 * `clusterDir`: the demo's staging cluster is in its own state directory).
 */
export function demoProject(project: Project): Project {
  const root = project.statePath("demo");
  const { clusterDir: _own, ...local } = project.config.local;
  return {
    dir: project.dir,
    config: { ...parseConfig({}), local: { ...local, clusterDir: undefined } },
    configFile: undefined,
    statePath: (...parts) => join(root, ...parts),
  };
}

/**
 * Removes what an earlier demo left (clusters stopped first, with their supervisors ending by themselves), and
 * anything an older demo left in the demo directory. The project's own state is not touched.
 */
export async function resetDemoState(demo: Project): Promise<void> {
  const root = demo.statePath();
  if (!existsSync(root)) return;
  for (const name of readdirSync(root)) {
    let cluster;
    try {
      cluster = openCluster({ ...localClusterOptions(demo), dir: join(root, name) });
    } catch {
      cluster = undefined; // not a cluster Airlock can open (damaged): removed with the rest
    }
    if (cluster !== undefined) await destroyCluster(cluster);
  }
  rmSync(root, { recursive: true, force: true });
}
