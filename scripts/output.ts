/**
 * Everything the CLI prints goes through here, so that no password or secret
 * reaches a terminal or a log: known secrets (from the environment and from
 * URLs on the command line) are replaced before writing.
 */
import { redactText } from "../src/pg/redact.ts";

const secrets = new Set<string>();

/** Secret values from the environment and from URLs in the arguments. */
export function collectSecrets(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): void {
  for (const key of ["AIRLOCK_SECRET", "PGPASSWORD", "PULUMI_CONFIG_PASSPHRASE"]) {
    const v = env[key];
    if (v !== undefined && v !== "") secrets.add(v);
  }
  for (const value of [...argv, ...Object.values(env)]) {
    if (value === undefined) continue;
    for (const m of value.matchAll(/postgres(?:ql)?:\/\/[^:/?#@\s]*:([^@\s]+)@/gi)) {
      try {
        secrets.add(decodeURIComponent(m[1]!));
      } catch {
        secrets.add(m[1]!);
      }
      secrets.add(m[1]!);
    }
  }
}

/** Adds a secret discovered at run time (e.g. a generated password). */
export function addSecret(value: string): void {
  if (value !== "") secrets.add(value);
}

/** Text with every known secret removed. */
export function redact(text: string): string {
  return redactText(text, [...secrets]);
}

/** Prints a line for people to stdout. */
export function say(text = ""): void {
  process.stdout.write(`${redact(text)}\n`);
}

/** Prints a machine-readable result to stdout. */
export function sayJson(value: unknown): void {
  process.stdout.write(`${redact(JSON.stringify(value, null, 2))}\n`);
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
  const line = (r: readonly string[]) => r.map((c, i) => (typeof rows[0]?.[i] === "number" ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}
