/**
 * Everything the CLI prints goes through here, so that no password or secret
 * reaches a terminal or a log: known secrets (from the environment and from
 * URLs on the command line) are replaced before writing.
 */
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

/** Progress for long work: a rewriting line on a terminal, nothing otherwise (and nothing with --json). */
export function progress(enabled: boolean): { update(text: string): void; done(text?: string): void } {
  const tty = enabled && process.stderr.isTTY === true;
  let last = "";
  return {
    update(text) {
      if (!tty || text === last) return;
      last = text;
      process.stderr.write(`\r\x1b[2K${redact(text)}`);
    },
    done(text) {
      if (!tty) return;
      process.stderr.write(`\r\x1b[2K${text === undefined ? "" : `${redact(text)}\n`}`);
    },
  };
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
