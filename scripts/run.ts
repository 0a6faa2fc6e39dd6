/**
 * `airlock run -- <agent command…>`: start a session and run the agent in
 * it, with the staging URL as its only database.
 */
import { type Command, Option } from "commander";
import { secretFromEnv } from "../src/config/keys.ts";
import { diffSession, summaryLines } from "../src/diff/run-diff.ts";
import type { BackendKind } from "../src/staging/backend.ts";
import { runAgent } from "../src/staging/run.ts";
import { noteClusterLeftRunning } from "./cluster.ts";
import { globalFlags, projectFor } from "./context.ts";
import { progress, say, sayJson, warn, withProgress } from "./output.ts";
import { diffPhases, sessionPhases } from "./phases.ts";
import { sessionFlags } from "./sessions.ts";

/** Registers the command. */
export function registerRun(program: Command): void {
  sessionFlags(program.command("run").description("run an agent command inside a fresh session (DATABASE_URL points at its staging database)"))
    .argument("<command...>", "the agent command, after --")
    .addHelpText(
      "after",
      `
The agent runs in a sandbox (bubblewrap on Linux): .airlock/, the cluster,
.env files and Docker sockets are hidden, the system is read-only, the project
stays writable. Its environment is an allowlist: PATH, HOME, LANG, LC_*, TERM,
TMPDIR, USER, SHELL, the names in run.env of airlock.config.ts, and
DATABASE_URL, PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE and AIRLOCK_SESSION
for its session — never a value holding a secret Airlock knows.
--sandbox none runs it unsandboxed (it can then read .env and .airlock/): said
loudly and recorded in the audit trail.
When the agent exits, its changes become a verified diff (as \`airlock diff\`);
the session is kept for review. The agent's exit code is Airlock's. Without
AIRLOCK_SECRET no diff is made (diffs are authenticated with it): run
\`airlock diff <session>\` once it is set.
With --json, stdout is one JSON object ({session, exitCode, diff}) and the
agent's own output goes to stderr.

Examples:
  airlock run --name fix-gallery -- node agent.js --task "fix the gallery"
  airlock run --json -- ./agent.sh > result.json`,
    )
    .addOption(new Option("--sandbox <kind>", "how the agent is contained (default from config: bubblewrap)").choices(["bubblewrap", "none"]))
    .action(
      async (
        command: string[],
        opts: { snapshot?: string; name?: string; ttl?: number; keep?: boolean; backend?: BackendKind; sandbox?: "bubblewrap" | "none" },
        cmd: Command,
      ) => {
        const json = globalFlags(cmd).json;
        const project = await projectFor(cmd);
        // The session's phases until the agent starts (a first session of a snapshot restores it), then the diff's.
        const up = progress(!json, "run");
        const result = await runAgent(project, command, {
          onProgress: sessionPhases(up),
          // With --json, stdout is the result alone: the agent's own output goes to stderr.
          ...(json ? { stdio: "stderr" as const } : {}),
          ...(opts.snapshot === undefined ? {} : { snapshotId: opts.snapshot }),
          ...(opts.name === undefined ? {} : { name: opts.name }),
          ...(opts.ttl === undefined ? {} : { ttlMs: opts.ttl }),
          ...(opts.keep === true ? { keep: true } : {}),
          ...(opts.backend === undefined ? {} : { backend: opts.backend }),
          ...(opts.sandbox === undefined ? {} : { sandbox: opts.sandbox }),
          onUnsandboxed: () =>
            warn(
              "airlock: WARNING: the agent runs WITHOUT a sandbox (--sandbox none): it can read .env, .airlock/ and everything this user can; recorded in the audit trail",
            ),
          onSession: (s) => {
            up.done("session ready");
            if (!json) warn(`airlock: session ${s.id} (${s.backend}, snapshot ${s.snapshotId}) is ready; running ${command.join(" ")}`);
          },
        }).finally(() => up.stop());
        if (!json) noteClusterLeftRunning(project, result.session.backend);
        // What the agent did becomes a verified diff at once; the session stays for review. A diff is authenticated
        // with AIRLOCK_SECRET: without it there is none yet, and the agent's exit code is still Airlock's.
        if (secretFromEnv() === undefined) {
          if (json) sayJson({ session: result.session.id, exitCode: result.exitCode, diff: null });
          else
            warn(
              `airlock: the agent exited with ${result.exitCode}; session ${result.session.id} is kept for review. No diff was made: AIRLOCK_SECRET is not set (run \`airlock diff ${result.session.id}\` with it)`,
            );
          process.exitCode = result.exitCode;
          return;
        }
        const diff = await withProgress(!json, "run", (bar) => diffSession(project, result.session.id, { onProgress: diffPhases(bar) }));
        if (json)
          sayJson({
            session: result.session.id,
            exitCode: result.exitCode,
            diff: { id: diff.id, verified: diff.diff.verification.verified, summary: diff.diff.summary, hazards: diff.diff.hazards },
          });
        else {
          warn(
            `airlock: the agent exited with ${result.exitCode}; session ${result.session.id} is kept for review (\`airlock down ${result.session.id}\` removes it)`,
          );
          for (const line of summaryLines(diff)) say(line);
        }
        process.exitCode = result.exitCode;
      },
    );
}
