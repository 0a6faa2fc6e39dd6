/**
 * `airlock cluster start|stop|status|destroy`: the embedded staging cluster
 * (the local backend's server), normally started on demand by other commands.
 */
import type { Command } from "commander";
import { localClusterOptions } from "../src/config/load.ts";
import { clusterStatus, destroyCluster, openCluster, stopCluster } from "../src/pg/cluster.ts";
import { LocalBackend } from "../src/staging/local-backend.ts";
import { supervisorState } from "../src/staging/supervisor.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson } from "./output.ts";

/** Registers the command. */
export function registerCluster(program: Command): void {
  const cluster = program
    .command("cluster")
    .description("manage the embedded Postgres cluster that holds staging databases")
    .addHelpText("after", "\nExample:\n  airlock cluster status");

  cluster
    .command("start")
    .description("create the cluster if needed and start it with its supervisor (a no-op when both run)")
    .addHelpText("after", "\nExample:\n  airlock cluster start")
    .action(async (_opts, cmd: Command) => {
      const project = await projectFor(cmd);
      const options = localClusterOptions(project);
      const wasRunning = clusterStatus(openCluster(options)).state === "running";
      const c = await new LocalBackend(options, project.statePath("sessions")).ensureCluster();
      const sup = supervisorState(c.dir);
      const info = {
        dir: c.dir,
        port: c.port,
        socketDir: c.socketDir,
        alreadyRunning: wasRunning,
        postgres: c.binaries.version,
        serverUser: c.serverUser.name,
        proxyPort: sup.port,
      };
      if (globalFlags(cmd).json) return sayJson(info);
      say(`${wasRunning ? "already running" : "started"}: Postgres ${info.postgres} on its Unix socket in ${c.socketDir} (as ${info.serverUser})`);
      say(`  agents connect through the supervisor on 127.0.0.1:${sup.port ?? "?"}`);
      say(`  data and log: ${c.dir}`);
      say(`  admin: psql "${c.adminTarget().display}"`);
    });

  cluster
    .command("stop")
    .description("stop the cluster; no server process stays behind")
    .addHelpText("after", "\nSessions stay on disk; the next command that needs the cluster starts it again.\n\nExample:\n  airlock cluster stop")
    .action(async (_opts, cmd: Command) => {
      const c = openCluster(localClusterOptions(await projectFor(cmd)));
      const r = c === undefined ? { wasRunning: false } : await stopCluster(c);
      if (globalFlags(cmd).json) return sayJson({ exists: c !== undefined, ...r });
      say(c === undefined ? "no cluster here" : r.wasRunning ? "stopped" : "was not running");
    });

  cluster
    .command("status")
    .description("say whether the cluster exists and runs, and where")
    .addHelpText("after", "\nExamples:\n  airlock cluster status\n  airlock cluster status --json")
    .action(async (_opts, cmd: Command) => {
      const options = localClusterOptions(await projectFor(cmd));
      const c = openCluster(options);
      const s = clusterStatus(c);
      const sup = c === undefined ? undefined : supervisorState(c.dir);
      const supervisor =
        sup === undefined
          ? undefined
          : {
              state: sup.state,
              ...(sup.port === undefined ? {} : { port: sup.port }),
              ...(sup.workerPid === undefined ? {} : { pid: sup.workerPid }),
              ...(sup.report === undefined ? {} : { updatedAt: sup.report.updatedAt }),
            };
      const info = {
        dir: options.dir,
        ...s,
        ...(c === undefined ? {} : { port: c.port, postgres: c.binaries.version, socketDir: c.socketDir, logFile: c.logFile }),
        ...(supervisor === undefined ? {} : { supervisor }),
      };
      if (globalFlags(cmd).json) return sayJson(info);
      say(`${s.state}${c === undefined ? "" : `: Postgres ${c.binaries.version}, port ${c.port}${s.pid === undefined ? "" : `, pid ${s.pid}`}`}`);
      if (supervisor !== undefined) {
        say(
          `  supervisor: ${supervisor.state}${supervisor.state === "running" ? `, proxy on 127.0.0.1:${supervisor.port}, pid ${supervisor.pid}` : s.state === "running" ? " — no agent can connect until it runs again (any airlock command that opens the cluster starts it)" : ""}`,
        );
      }
      say(`  dir: ${options.dir}`);
    });

  cluster
    .command("destroy")
    .description("stop the cluster and delete it with every staging database in it")
    .addHelpText("after", "\nExample:\n  airlock cluster destroy --erase")
    .requiredOption("--erase", "confirm that every staging database in the cluster is to be deleted")
    .action(async (_opts, cmd: Command) => {
      const c = openCluster(localClusterOptions(await projectFor(cmd)));
      if (c !== undefined) await destroyCluster(c);
      if (globalFlags(cmd).json) return sayJson({ destroyed: c !== undefined });
      say(c === undefined ? "no cluster here" : `destroyed ${c.dir}`);
    });
}
