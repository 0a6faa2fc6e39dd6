/**
 * `airlock cluster start|stop|status|destroy`: the embedded staging cluster
 * (the local backend's server), normally started on demand by other commands.
 */
import type { Command } from "commander";
import { type Project, localClusterDir, localClusterOptions } from "../src/config/load.ts";
import { displayPath } from "../src/config/state-file.ts";
import { clusterStatus, destroyCluster, openCluster, stopCluster } from "../src/pg/cluster.ts";
import type { BackendKind } from "../src/staging/backend.ts";
import { readIdleFile } from "../src/staging/idle-stop.ts";
import { LocalBackend } from "../src/staging/local-backend.ts";
import { supervisorState } from "../src/staging/supervisor.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, warn } from "./output.ts";

/** A duration as airlock.config.ts writes it: "30m", "2h", "45s". */
function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
  ] as const)
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

/** When the cluster stops by itself, for people. */
function idleStopText(afterMs: number | null): string {
  return afterMs === null
    ? 'it runs until `airlock cluster stop` (local.idleStop: "never")'
    : `it stops by itself ${formatDuration(afterMs)} after its last session is gone (local.idleStop), or now with \`airlock cluster stop\``;
}

/** The embedded cluster a local session leaves running (`up`, `run`): where, and when it stops; undefined for other backends. */
export function clusterLeftRunning(project: Project, backend: BackendKind) {
  if (backend !== "local") return undefined;
  const dir = localClusterDir(project);
  const port = supervisorState(dir).port;
  return { dir, proxyPort: port ?? null, idleStopMs: project.config.local.idleStop, stop: "airlock cluster stop" };
}

/** Says on stderr that a local session's command leaves the embedded cluster running, and how it stops. */
export function noteClusterLeftRunning(project: Project, backend: BackendKind): void {
  const c = clusterLeftRunning(project, backend);
  if (c === undefined) return;
  const door = c.proxyPort === null ? "" : `; agents connect through 127.0.0.1:${c.proxyPort}`;
  warn(`airlock: the embedded staging cluster keeps running (${displayPath(c.dir)}${door}); ${idleStopText(c.idleStopMs)}`);
}

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
      const c = await new LocalBackend(options, project.statePath("sessions"), project.config.local.idleStop).ensureCluster();
      const sup = supervisorState(c.dir);
      const info = {
        dir: c.dir,
        port: c.port,
        socketDir: c.socketDir,
        alreadyRunning: wasRunning,
        postgres: c.binaries.version,
        serverUser: c.serverUser.name,
        proxyPort: sup.port,
        idleStopMs: project.config.local.idleStop,
      };
      if (globalFlags(cmd).json) return sayJson(info);
      say(`${wasRunning ? "already running" : "started"}: Postgres ${info.postgres} on its Unix socket in ${c.socketDir} (as ${info.serverUser})`);
      say(`  agents connect through the supervisor on 127.0.0.1:${sup.port ?? "?"}`);
      say(`  data and log: ${c.dir}`);
      say(`  admin: psql "${c.adminTarget().display}"`);
      say(`  ${idleStopText(info.idleStopMs)}`);
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
    .description("say whether the cluster exists and runs, where, and when it stops by itself (local.idleStop)")
    .addHelpText("after", "\nExamples:\n  airlock cluster status\n  airlock cluster status --json")
    .action(async (_opts, cmd: Command) => {
      const project = await projectFor(cmd);
      const options = localClusterOptions(project);
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
      // When it stops by itself: as the running supervisor sees it, or when it last did.
      const idleFile = c === undefined ? undefined : readIdleFile(c.dir);
      const seen = s.state === "running" && sup?.state === "running" ? sup.report?.idle : undefined;
      const idleStop = {
        afterMs: seen?.afterMs ?? idleFile?.idleStopMs ?? project.config.local.idleStop,
        ...(seen === undefined ? {} : { sessions: seen.sessions, idleSince: seen.idleSince, stopsAt: seen.stopsAt }),
        ...(s.state === "stopped" && idleFile?.stoppedAt !== undefined ? { stoppedAt: idleFile.stoppedAt } : {}),
      };
      const info = {
        dir: options.dir,
        ...s,
        ...(c === undefined ? {} : { port: c.port, postgres: c.binaries.version, socketDir: c.socketDir, logFile: c.logFile }),
        ...(supervisor === undefined ? {} : { supervisor }),
        ...(c === undefined ? {} : { idleStop }),
      };
      if (globalFlags(cmd).json) return sayJson(info);
      say(`${s.state}${c === undefined ? "" : `: Postgres ${c.binaries.version}, port ${c.port}${s.pid === undefined ? "" : `, pid ${s.pid}`}`}`);
      if (supervisor !== undefined) {
        say(
          `  supervisor: ${supervisor.state}${supervisor.state === "running" ? `, proxy on 127.0.0.1:${supervisor.port}, pid ${supervisor.pid}` : s.state === "running" ? " — no agent can connect until it runs again (any airlock command that opens the cluster starts it)" : ""}`,
        );
      }
      if (idleStop.stoppedAt !== undefined)
        say(`  stopped by itself at ${idleStop.stoppedAt}, unneeded for ${formatDuration(idleStop.afterMs!)}; the next command that needs it starts it again`);
      else if (seen !== undefined && seen.afterMs !== null && seen.stopsAt !== null)
        say(`  stops by itself at ${seen.stopsAt}: nothing has needed it since ${seen.idleSince} (local.idleStop: ${formatDuration(seen.afterMs)})`);
      else if (seen !== undefined) {
        const now =
          seen.idleSince !== null
            ? "nothing needs it now"
            : seen.sessions === 0
              ? "a connection keeps it running"
              : `${seen.sessions === 1 ? "1 session keeps" : `${seen.sessions} sessions keep`} it running`;
        say(`  ${now}; ${idleStopText(seen.afterMs)}`);
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
