/**
 * `airlock cluster start|stop|status|destroy`: the embedded staging cluster
 * (the local backend's server), normally started on demand by other commands.
 */
import type { Command } from "commander";
import { localClusterOptions } from "../src/config/load.ts";
import { clusterStatus, createCluster, destroyCluster, openCluster, startCluster, stopCluster } from "../src/pg/cluster.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson } from "./output.ts";

/** Registers the command. */
export function registerCluster(program: Command): void {
  const cluster = program.command("cluster").description("manage the embedded Postgres cluster that holds staging databases");

  cluster
    .command("start")
    .description("create the cluster if needed and start it (a no-op when it runs)")
    .action(async (_opts, cmd: Command) => {
      const options = localClusterOptions(await projectFor(cmd));
      const c = await createCluster(options);
      const r = await startCluster(c);
      const info = { dir: c.dir, port: c.port, socketDir: c.socketDir, alreadyRunning: r.alreadyRunning, postgres: c.binaries.version, serverUser: c.serverUser.name };
      if (globalFlags(cmd).json) return sayJson(info);
      say(`${r.alreadyRunning ? "already running" : "started"}: Postgres ${info.postgres} on 127.0.0.1:${c.port} (as ${info.serverUser})`);
      say(`  data and log: ${c.dir}`);
      say(`  admin: psql "${c.adminTarget().display}"`);
    });

  cluster
    .command("stop")
    .description("stop the cluster; no server process stays behind")
    .action(async (_opts, cmd: Command) => {
      const c = openCluster(localClusterOptions(await projectFor(cmd)));
      const r = c === undefined ? { wasRunning: false } : await stopCluster(c);
      if (globalFlags(cmd).json) return sayJson({ exists: c !== undefined, ...r });
      say(c === undefined ? "no cluster here" : r.wasRunning ? "stopped" : "was not running");
    });

  cluster
    .command("status")
    .description("say whether the cluster exists and runs, and where")
    .action(async (_opts, cmd: Command) => {
      const options = localClusterOptions(await projectFor(cmd));
      const c = openCluster(options);
      const s = clusterStatus(c);
      const info = { dir: options.dir, ...s, ...(c === undefined ? {} : { port: c.port, postgres: c.binaries.version, socketDir: c.socketDir, logFile: c.logFile }) };
      if (globalFlags(cmd).json) return sayJson(info);
      say(`${s.state}${c === undefined ? "" : `: Postgres ${c.binaries.version}, port ${c.port}${s.pid === undefined ? "" : `, pid ${s.pid}`}`}`);
      say(`  dir: ${options.dir}`);
    });

  cluster
    .command("destroy")
    .description("stop the cluster and delete it with every staging database in it")
    .requiredOption("--erase", "confirm that every staging database in the cluster is to be deleted")
    .action(async (_opts, cmd: Command) => {
      const c = openCluster(localClusterOptions(await projectFor(cmd)));
      if (c !== undefined) await destroyCluster(c);
      if (globalFlags(cmd).json) return sayJson({ destroyed: c !== undefined });
      say(c === undefined ? "no cluster here" : `destroyed ${c.dir}`);
    });
}
