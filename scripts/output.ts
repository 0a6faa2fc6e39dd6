/**
 * Everything the CLI prints goes through here, so that no password or secret
 * reaches a terminal or a log: known secrets (from the environment and from
 * URLs on the command line) are replaced before writing.
 */
import ora, { type Ora } from "ora";
import { credentialsIn, redactText } from "../src/pg/redact.ts";

const secrets = new Set<string>();

/** Environment variables whose value is a secret as a whole. */
const SECRET_VARIABLES = ["AIRLOCK_SECRET", "PGPASSWORD", "PULUMI_CONFIG_PASSPHRASE"];

/** The passwords an environment carries: secret variables, and those inside its connection strings. */
function environmentSecrets(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || value === "") continue;
    if (SECRET_VARIABLES.includes(key)) out.push(value);
    else if (/URL|DSN|DATABASE|CONN/i.test(key) || /:\/\/|pass|pwd/i.test(value)) out.push(...credentialsIn(value));
  }
  return out;
}

/**
 * Whether an argument may be a connection string: a URL, `key=value` pairs, `password…` anywhere, or a
 * scheme-less `user:password@host…` with no whitespace (so that a note like "fix: ask bob@corp" is not one).
 */
function mayBeConnectionString(arg: string): boolean {
  return /:\/\/|^\s*\w+\s*=|pass|pwd/i.test(arg) || /^[^\s:@]*:\S*@\S+$/.test(arg);
}

/**
 * Secret values from the environment and from the arguments: every password an argument would carry
 * as a connection string, whatever its shape (`postgres://u:p@h`, `u:p@h/db`, `password=…`).
 */
export function collectSecrets(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  for (const value of environmentSecrets(env)) secrets.add(value);
  for (const arg of argv) if (mayBeConnectionString(arg)) for (const value of credentialsIn(arg)) secrets.add(value);
}

/** Adds a secret discovered at run time (e.g. a generated password). */
export function addSecret(value: string): void {
  if (value !== "") secrets.add(value);
}

/** Text with every known secret removed (the environment is read again: `.env` is loaded after the arguments). */
export function redact(text: string): string {
  return redactText(text, [...secrets, ...environmentSecrets(process.env)]);
}

/** Prints a line for people to stdout. */
export function say(text = ""): void {
  process.stdout.write(`${redact(text)}\n`);
}

/** A JSON value with every string in it (keys too) redacted: redacting JSON text could break its syntax. */
function redactDeep(value: unknown): unknown {
  if (typeof value === "string") return redact(value);
  if (value === null || typeof value !== "object") return value;
  const plain = typeof (value as { toJSON?: unknown }).toJSON === "function" ? (value as { toJSON(): unknown }).toJSON() : value;
  if (plain !== value) return redactDeep(plain);
  if (Array.isArray(value)) return value.map(redactDeep);
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [redact(k), redactDeep(v)]));
}

/** Prints a machine-readable result to stdout. */
export function sayJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(redactDeep(value), null, 2)}\n`);
}

/**
 * Prints without redaction. Only for handing a session's agent URL to the
 * user who asked for it (`up`, `url`): the agent's own staging password,
 * never production's.
 */
export function sayUnredacted(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Prints a diagnostic to stderr. */
export function warn(text: string): void {
  process.stderr.write(`${redact(text)}\n`);
}

/** What a long step shows while it works (progress()). */
export interface Progress {
  /** A new phase: the live line on a terminal; one plain line on stderr otherwise ("airlock diff: comparing rows (at 1.2 s)"). */
  phase(text: string): void;
  /** How far the current phase is (a table, a share of bytes): on a terminal only, never a line of its own. */
  update(text: string): void;
  /** Done: the live line goes; off a terminal, a last line with the time taken, "<what> in 7.0 s" (when phases were printed). */
  done(what?: string): void;
  /** Stopped by a failure: the live line goes, and nothing is added (the error says the rest). */
  stop(): void;
}

/**
 * Progress for long work, written to stderr: on a terminal a live line (an `ora` spinner with the phase, how far it
 * is and the seconds so far), otherwise one plain line per phase with the time it started, so that a log shows where
 * the time went; with `enabled` false (--json) nothing at all. Every text is redacted; phases name steps and tables,
 * never a value.
 */
export function progress(enabled: boolean, command?: string): Progress {
  const started = Date.now();
  const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
  const prefix = command === undefined ? "airlock" : `airlock ${command}`;
  const tty = enabled && process.stderr.isTTY === true && process.env.TERM !== "dumb";
  let spinner: Ora | undefined;
  let phase = "";
  let shown = "";
  let printed = false;
  const show = (text: string) => {
    if (text === shown) return;
    shown = text;
    if (spinner !== undefined) {
      spinner.text = redact(text);
      return;
    }
    // A pty nobody gave a size (`script` without a terminal, some CI runners) reports 0 columns, and ora would count
    // its line as infinitely tall and never stop clearing it: such a terminal is taken as 80 columns wide.
    if (!(process.stderr.columns > 0)) process.stderr.columns = 80;
    // isEnabled: a terminal was checked above (ora would otherwise turn itself off wherever CI is set); stdin is left alone.
    spinner = ora({ text: redact(text), stream: process.stderr, isEnabled: true, discardStdin: false, suffixText: () => `(${seconds()} s)` }).start();
  };
  const end = () => {
    spinner?.stop();
    spinner = undefined;
    phase = shown = "";
  };
  return {
    phase(text) {
      if (!enabled || text === phase) return;
      phase = text;
      // Shown at once, not at the spinner's next frame: a phase shorter than a frame is on the terminal too.
      if (tty) {
        show(text);
        spinner?.render();
        return;
      }
      printed = true;
      process.stderr.write(`${prefix}: ${redact(text)} (at ${seconds()} s)\n`);
    },
    update(text) {
      if (tty) show(phase === "" ? text : `${phase}: ${text}`);
    },
    done(what = "done") {
      end();
      if (printed) process.stderr.write(`${prefix}: ${what} in ${seconds()} s\n`);
      printed = false;
    },
    stop: end,
  };
}

/** Runs `work` with progress() shown, ended whatever happens (on a failure, before the error is printed). */
export async function withProgress<T>(enabled: boolean, command: string, work: (bar: Progress) => Promise<T>): Promise<T> {
  const bar = progress(enabled, command);
  try {
    const result = await work(bar);
    bar.done();
    return result;
  } finally {
    bar.stop();
  }
}

/** A fixed-width table for terminals. */
export function table(headers: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (typeof rows[0]?.[i] === "number" ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}
