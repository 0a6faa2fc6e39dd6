/**
 * `airlock up`, `ls`, `down`, `gc`, `url`: agent sessions on a staging
 * backend (one file for the five small verbs of one concept).
 */
import { type Command, Option } from "commander";
import { AirlockError } from "../src/errors.ts";
import { parseDuration } from "../src/config/schema.ts";
import type { BackendKind } from "../src/staging/backend.ts";
import {
  agentConnection,
  containerHealth,
  createSession,
  destroySession,
  gcSessions,
  isIncomplete,
  listSessions,
  readSession,
  sessionLimits,
} from "../src/staging/sessions.ts";
import { clusterLeftRunning, noteClusterLeftRunning } from "./cluster.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, sayUnredacted, table, withProgress } from "./output.ts";
import { sessionPhases } from "./phases.ts";

/** Parses --ttl. */
export function ttlOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new AirlockError("AIRLOCK_BAD_TTL", `--ttl ${value} is not a duration`, { hint: 'use e.g. "30m", "2h" or "1d"' });
  return ms;
}

function formatBytes(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GB` : n >= 1024 ** 2 ? `${Math.round(n / 1024 ** 2)} MB` : `${Math.round(n / 1024)} kB`;
}

function age(iso: string, now = Date.now()): string {
  const s = Math.round((now - Date.parse(iso)) / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** The flags `up` and `run` share. */
export function sessionFlags(cmd: Command): Command {
  return cmd
    .option("--snapshot <id>", "the snapshot to clone (default: the newest)")
    .option("--name <name>", "a name for the session (lowercase letters, digits, dashes)")
    .option("--ttl <duration>", "how long until `airlock gc` may destroy it (default from config: 2h)", ttlOption)
    .option("--keep", "never expire (only `airlock down` removes it)")
    .addOption(new Option("--backend <kind>", "where the staging database runs").choices(["local", "docker", "pulumi"]));
}

/** Registers the commands. */
export function registerSessions(program: Command): void {
  sessionFlags(program.command("up").description("create an agent session: a disposable staging database cloned from a snapshot"))
    .addHelpText(
      "after",
      "\nPrints the session id and the agent's connection URL (the agent's own, never production's).\n\nExample:\n  airlock up --name fix-gallery --ttl 4h",
    )
    .action(async (opts: { snapshot?: string; name?: string; ttl?: number; keep?: boolean; backend?: BackendKind }, cmd: Command) => {
      const project = await projectFor(cmd);
      const started = Date.now();
      const s = await withProgress(!globalFlags(cmd).json, "up", (bar) =>
        createSession(project, {
          ...(opts.snapshot === undefined ? {} : { snapshotId: opts.snapshot }),
          ...(opts.name === undefined ? {} : { name: opts.name }),
          ...(opts.ttl === undefined ? {} : { ttlMs: opts.ttl }),
          ...(opts.keep === true ? { keep: true } : {}),
          ...(opts.backend === undefined ? {} : { backend: opts.backend }),
          onProgress: sessionPhases(bar),
        }),
      );
      const { url } = agentConnection(project, s.id);
      if (globalFlags(cmd).json)
        return sayUnredacted(JSON.stringify({ ...s, url, elapsedMs: Date.now() - started, cluster: clusterLeftRunning(project, s.backend) }, null, 2));
      say(
        `session ${s.id} (${s.backend}, snapshot ${s.snapshotId}) ready in ${Date.now() - started} ms, ${s.expiresAt === null ? "kept until `airlock down`" : `expires ${s.expiresAt}`}`,
      );
      sayUnredacted(url);
      noteClusterLeftRunning(project, s.backend);
    });

  program
    .command("ls")
    .description("list sessions with backend, snapshot, age, expiry, connections and disk against their limits, and state")
    .addHelpText(
      "after",
      "\nA session a limit stopped (its disk quota) shows why in STATE; its work is still there for `airlock diff`.\n\nExamples:\n  airlock ls\n  airlock ls --json",
    )
    .action(async (_opts, cmd: Command) => {
      const project = await projectFor(cmd);
      const sessions = listSessions(project);
      const now = Date.now();
      const rows = await Promise.all(
        sessions.map(async (s) => {
          // An unfinished `airlock up`: "creating" while it runs, "broken" once it died (`down`/`gc` remove it).
          if (isIncomplete(s)) return { ...s, state: s.incomplete, limits: undefined, container: undefined };
          const limits = sessionLimits(project, s);
          // A container session: what its container does (a killed one shows as dead).
          const container = await containerHealth(project, s);
          const state =
            limits?.stopped !== null && limits?.stopped !== undefined
              ? "stopped"
              : limits !== undefined && !limits.supervised
                ? "supervisor down"
                : container !== undefined && container.state !== "ready"
                  ? container.state
                  : s.expiresAt !== null && Date.parse(s.expiresAt) <= now
                    ? "expired"
                    : "ready";
          return { ...s, state, ...(limits === undefined ? {} : { limits }), ...(container === undefined ? {} : { container }) };
        }),
      );
      if (globalFlags(cmd).json) return sayJson(rows);
      if (rows.length === 0) return say("no sessions: `airlock up` or `airlock run -- <agent>`");
      say(
        table(
          ["id", "backend", "snapshot", "age", "expires", "conns", "disk", "state"],
          rows.map((s) => [
            s.id,
            s.backend,
            s.snapshotId,
            age(s.createdAt, now),
            s.expiresAt ?? "never",
            s.limits === undefined ? "-" : `${s.limits.connections}/${s.limits.connectionLimit}`,
            s.limits === undefined ? "-" : `${formatBytes(s.limits.diskBytes)} / ${formatBytes(s.limits.quotaBytes)}`,
            s.state,
          ]),
        ),
      );
      for (const s of rows) if (s.limits?.stopped) say(`${s.id}: ${s.limits.stopped}`);
      for (const s of rows) if (s.container?.detail) say(`${s.id}: ${s.container.detail}`);
      for (const s of sessions) if (isIncomplete(s)) say(`${s.id}: ${s.reason}`);
    });

  program
    .command("down <session>")
    .description("destroy a session: its databases and role (or its stack)")
    .addHelpText("after", "\nExample:\n  airlock down fix-gallery")
    .action(async (id: string, _opts, cmd: Command) => {
      await destroySession(await projectFor(cmd), id);
      if (globalFlags(cmd).json) return sayJson({ destroyed: id });
      say(`destroyed ${id}`);
    });

  program
    .command("gc")
    .description("destroy every expired session")
    .addHelpText("after", "\nAlso removes sessions a killed `airlock up` left half-made (shown as broken by `airlock ls`).\n\nExample:\n  airlock gc")
    .action(async (_opts, cmd: Command) => {
      const gone = await gcSessions(await projectFor(cmd));
      if (globalFlags(cmd).json) return sayJson({ destroyed: gone });
      say(gone.length === 0 ? "no expired sessions" : `destroyed ${gone.join(", ")}`);
    });

  program
    .command("url <session>")
    .description("print the agent's connection URL of a session again")
    .addHelpText("after", '\nThe URL carries the agent\'s password: hand it to the agent, not to a log.\n\nExample:\n  psql "$(airlock url fix-gallery)"')
    .action(async (id: string, _opts, cmd: Command) => {
      const project = await projectFor(cmd);
      const s = readSession(project, id);
      const { url } = agentConnection(project, id);
      sayUnredacted(globalFlags(cmd).json ? JSON.stringify({ id: s.id, url }, null, 2) : url);
    });
}
