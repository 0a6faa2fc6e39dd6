/**
 * The `airlock` CLI: parses flags, calls the library, prints. One file per
 * command; this file wires them together and is the one place errors are
 * printed and turned into exit codes (0 ok, 1 error, 2 refused).
 */
import { Command, CommanderError } from "commander";
import { AirlockError, EXIT_ERROR, formatError } from "../src/errors.ts";
import { registerAudit } from "./audit.ts";
import { registerCluster } from "./cluster.ts";
import { registerConfig } from "./config.ts";
import { registerDemo } from "./demo.ts";
import { registerDiff } from "./diff.ts";
import { registerImage } from "./image.ts";
import { collectSecrets, redact, sayJson, warn } from "./output.ts";
import { registerSeedDemo } from "./seed-demo.ts";
import { registerPromote } from "./promote.ts";
import { registerReview } from "./review.ts";
import { registerRun } from "./run.ts";
import { registerSessions } from "./sessions.ts";
import { registerSnapshot } from "./snapshot.ts";

/** Builds the command tree. */
export function buildProgram(): Command {
  const program = new Command()
    .name("airlock")
    .description("Disposable, masked staging Postgres for AI agents, and verified, approved, reversible promotion to production.")
    .version("0.1.0")
    .option("--json", "print machine-readable JSON instead of text")
    .option("--config <file>", "use this config file instead of ./airlock.config.ts")
    .showSuggestionAfterError()
    .exitOverride()
    .addHelpText(
      "after",
      `
Exit codes: 0 ok, 1 error, 2 refused (approval, hazard or conflict).
Secrets come from .env (PROD_DATABASE_URL, AIRLOCK_SECRET); see .env.example.
Run \`airlock <command> --help\` for a command's flags and examples.`,
    );
  registerDemo(program);
  registerSeedDemo(program);
  registerSnapshot(program);
  registerSessions(program);
  registerRun(program);
  registerDiff(program);
  registerReview(program);
  registerPromote(program);
  registerAudit(program);
  registerCluster(program);
  registerImage(program);
  registerConfig(program);
  const all = (c: Command): Command[] => [c, ...c.commands.flatMap(all)];
  for (const cmd of all(program)) cmd.exitOverride();
  return program;
}

/**
 * A reader that stops early (`airlock ls | head -1`) closes the pipe: the next write fails with EPIPE,
 * which Node reports as an 'error' event that would crash the CLI with a stack trace. From then on that
 * stream's output is dropped, quietly, and the command runs to its end and exits with its own code (0 when
 * it succeeded) instead of the 141 (128 + SIGPIPE) of a process the signal kills: nobody reading what a
 * promotion or a snapshot prints must not stop it half-way. Any other failure of stdout or stderr (a
 * terminal that went away) is treated the same: there is nowhere left to report it.
 */
export function dropOutputWhenClosed(stream: NodeJS.WriteStream): void {
  let closed = false;
  stream.on("error", () => {
    closed = true;
  });
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((...args: unknown[]) => {
    if (!closed && !stream.destroyed) return write(...args);
    const callback = args.findLast((a) => typeof a === "function") as (() => void) | undefined;
    if (callback !== undefined) process.nextTick(callback);
    return true;
  }) as typeof stream.write;
}

/** Runs the CLI and returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  collectSecrets(argv);
  const program = buildProgram();
  const json = argv.includes("--json");
  try {
    await program.parseAsync([...argv], { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // commander already printed usage or help
    const err = e instanceof AirlockError ? e : undefined;
    if (json) sayJson({ ok: false, error: err?.toJSON() ?? { code: "AIRLOCK_INTERNAL", message: redact(String((e as Error)?.message ?? e)) } });
    warn(formatError(e));
    if (err === undefined && process.env.AIRLOCK_DEBUG === "1") warn(redact(String((e as Error)?.stack)));
    return err?.exitCode ?? EXIT_ERROR;
  }
}

dropOutputWhenClosed(process.stdout);
dropOutputWhenClosed(process.stderr);
process.exitCode = await main(process.argv.slice(2));
