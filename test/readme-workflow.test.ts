/**
 * The README's "The workflow on a real production database", run as written.
 * The commands are read from the README's code block (comment lines
 * skipped), never retyped here; the only substitutions are its placeholders
 * (`<your agent>`, the ids earlier commands print, optional `[…]` flags left
 * out) and the variables the README tells the user to set: `.env`'s, filled
 * in after the `cp`, and `$EDITOR`, `$PROMOTE_URL`, `$AUDIT_URL`. Production
 * is a throwaway cluster with the demo dataset owned by an application role,
 * and Airlock's roles are made by the README's own SQL ("Roles and
 * privileges"), the audit role's grants after the first promotion as it
 * says. Every line runs through `sh` in a fresh project directory, with
 * `airlock` on PATH; approve asks for its confirmation on a terminal, so it
 * runs on a pseudo-terminal (`script`) where the test types it. A README
 * command that fails fails this test: fix the README or the product.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { type PgTarget, formatUrl, makeTarget, withClient } from "../src/pg/connect.ts";
import { defaultSandbox } from "../src/staging/sandbox.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";
import { checksums } from "./helpers/database-state.ts";
import { BIN } from "./helpers/cli.ts";

const REPO = resolve(import.meta.dirname, "..");
const README = readFileSync(join(REPO, "README.md"), "utf8");
const PASSWORD = "readme-role-pw-0123";
const SECRET = "readme-workflow-secret-0123456789abcdef";
const AGENT = `'${process.execPath}' '${join(REPO, "seeders", "demo", "agent.mjs")}' fix`;

/** The part of the README under a heading, up to the next heading of the same level. */
function section(heading: string): string {
  const level = /^#+/.exec(heading)![0];
  const rest = README.split(`\n${heading}\n`)[1];
  if (rest === undefined) throw new Error(`README has no "${heading}"`);
  return rest.split(new RegExp(`\\n${level} `))[0]!;
}

/** The first fenced code block of a language in a text. */
function codeBlock(text: string, lang: string): string {
  const m = new RegExp("```" + lang + "\\n([\\s\\S]*?)\\n```").exec(text);
  if (m === null) throw new Error(`no \`\`\`${lang} block`);
  return m[1]!;
}

/** The workflow's command lines, as written: blank and comment-only lines skipped; each with its trailing comment. */
const COMMANDS = codeBlock(section("## The workflow on a real production database"), "sh")
  .split("\n")
  .filter((l) => l.trim() !== "" && !l.trim().startsWith("#"))
  .map((l) => {
    const m = /^(.*?)(?:\s+#\s(.*))?$/.exec(l)!;
    return { line: m[1]!.trim(), comment: m[2] ?? "" };
  });

/** The README's role statements, split at its comment headings: capture, promote (and rollback), audit. */
const ROLE_SQL = Object.fromEntries(
  codeBlock(section("### Roles and privileges"), "sql")
    .split(/^(?=-- (?:capture|promote|audit)\b)/m)
    .filter((part) => part.startsWith("-- "))
    .map((part) => [/^-- (\w+)/.exec(part)![1]!, part.replaceAll("'…'", `'${PASSWORD}'`)]),
) as Record<string, string>;

let prodCluster: TestCluster;
let admin: PgTarget;
let dir: string;
let env: NodeJS.ProcessEnv;
const as = (user: string) => formatUrl(makeTarget({ host: "127.0.0.1", port: admin.port, database: "production", user, password: PASSWORD }), true);

/** A small executable script. */
function script(path: string, body: string): string {
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

beforeAll(async () => {
  prodCluster = await startTestCluster("readme-prod");
  admin = await prodCluster.createDatabase("production");
  const sql = (text: string) => withClient(admin, { step: "test", searchPath: "public" }, (c) => c.query(text));
  // The application's tables belong to the application's role, as in a real deployment.
  await sql(`CREATE ROLE app_owner LOGIN PASSWORD '${PASSWORD}'; GRANT CREATE ON SCHEMA public TO app_owner;`);
  await seedDemo({ target: as("app_owner"), scale: 1 });
  await sql(ROLE_SQL.capture!);
  await sql(ROLE_SQL.promote!);

  dir = testClusterDir("readme-project");
  const bin = join(dir, ".test-bin");
  mkdirSync(bin, { recursive: true });
  chmodSync(dir, 0o755);
  // What the user has: a checkout's (or the package's) .env.example, `airlock` on PATH, an editor, a desktop's opener.
  copyFileSync(join(REPO, ".env.example"), join(dir, ".env.example"));
  script(join(bin, "airlock"), `exec '${process.execPath}' '${BIN}' "$@"`);
  script(join(bin, "xdg-open"), `printf '%s\\n' "$*" >> '${join(dir, ".test-opened")}'`);
  const { PROD_DATABASE_URL: _p, AIRLOCK_SECRET: _s, DISPLAY: _d, WAYLAND_DISPLAY: _w, ...rest } = process.env;
  env = {
    ...rest,
    PATH: `${bin}:${process.env.PATH}`,
    DISPLAY: ":0",
    EDITOR: script(join(bin, "editor"), `printf '%s\\n' "$*" >> '${join(dir, ".test-edited")}'`),
    PROMOTE_URL: as("airlock_promoter"),
    AUDIT_URL: as("airlock_auditor"),
  };
}, 240_000);

afterAll(async () => {
  if (dir !== undefined) {
    spawnSync(process.execPath, [BIN, "cluster", "destroy", "--erase"], { cwd: dir, env, timeout: 120_000 });
    rmSync(dir, { recursive: true, force: true });
  }
  await prodCluster?.close();
});

/** Runs a README line through sh in the project; `typed` is what the user types on the terminal it then gets. */
function sh(line: string, typed?: string): { code: number | null; out: string; stdout: string; stderr: string } {
  const r =
    typed === undefined
      ? spawnSync("sh", ["-c", line], { cwd: dir, env, encoding: "utf8", timeout: 240_000 })
      : spawnSync("script", ["-qec", line, "/dev/null"], { cwd: dir, env, input: typed, encoding: "utf8", timeout: 240_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout, stderr: r.stderr };
}

describe("the README's workflow, as written", () => {
  it("finds the commands in the README", () => {
    expect(COMMANDS.map((c) => /\bairlock ([a-z-]+)/.exec(c.line)?.[1] ?? c.line.split(" ")[0])).toEqual([
      "cp",
      "snapshot",
      "$EDITOR",
      "snapshot",
      "run",
      "review",
      "approve",
      "promote",
      "promote",
      "rollback",
      "audit",
    ]);
    expect(Object.keys(ROLE_SQL)).toEqual(["capture", "promote", "audit"]);
  });

  it("runs every command against a throwaway production, and each does what its comment says", async (ctx) => {
    if (defaultSandbox() === undefined) ctx.skip("bubblewrap is not installed: the README's `airlock run` starts agents in it (Quick start)");
    const original = await checksums(admin);
    const ids: Record<string, string> = {};
    const outputs: string[] = [];

    for (const { line, comment } of COMMANDS) {
      // The README's variables must be the ones the test provides: a new one fails here, not silently.
      for (const [, name] of line.matchAll(/\$([A-Z_]+)/g)) expect(env[name!], `$${name} in: ${line}`).toBeDefined();
      const command = line
        .replace(/\s*\[[^\]]*\]/g, "") // optional flags, left out
        .replace("<your agent>", AGENT)
        .replace(/<(id|promotion)>/g, (_, k: string) => ids[k] ?? `<${k}: not printed by an earlier command>`);
      expect(command, `a placeholder the test does not know in: ${line}`).not.toMatch(/<[^>]+>/);
      const approve = /\bairlock approve\b/.test(command);
      // The first audit role statements need the trail the first promotion creates (README: "after the first promotion").
      if (/\bairlock audit\b/.test(command)) await withClient(admin, { step: "test", searchPath: "public" }, (c) => c.query(ROLE_SQL.audit!));
      const r = sh(command, approve ? `${ids.id!.slice(0, 8)}\n` : undefined);
      outputs.push(r.out);
      expect(r.code, `${command}\n${r.out}`).toBe(0);

      if (line.startsWith("cp ")) {
        // The user fills in what the comment names: `NAME=value` pairs.
        const names = [...comment.matchAll(/\b([A-Z][A-Z_]+)=/g)].map((m) => m[1]!);
        expect(names).toEqual(["PROD_DATABASE_URL", "AIRLOCK_SECRET"]);
        const values: Record<string, string> = { PROD_DATABASE_URL: as("airlock_reader"), AIRLOCK_SECRET: SECRET };
        const file = join(dir, ".env");
        let text = readFileSync(file, "utf8");
        for (const name of names) {
          expect(text, `.env.example has ${name}`).toMatch(new RegExp(`^${name}=`, "m"));
          text = text.replace(new RegExp(`^${name}=.*$`, "m"), `${name}=${values[name]}`);
        }
        writeFileSync(file, text);
      } else if (/snapshot --init-rules/.test(command)) {
        expect(readFileSync(join(dir, "airlock.config.ts"), "utf8")).toContain('"public.guests.email"');
      } else if (command.startsWith("$EDITOR")) {
        expect(readFileSync(join(dir, ".test-edited"), "utf8")).toBe("airlock.config.ts\n");
      } else if (/airlock snapshot$/.test(command)) {
        expect(r.stdout).toMatch(/^snapshot snap-\d{8}-\d{6}-[0-9a-f]{6}: .*leak scan clean/m);
      } else if (/airlock run\b/.test(command)) {
        expect(r.out).toContain("agent: corrected booking");
        const diff = /^diff ([0-9a-f]{64}) for session \S+: (.*) \(/m.exec(r.stdout);
        expect(diff, r.out).not.toBeNull();
        ids.id = diff![1]!;
        expect(diff![2]).toBe("0 inserts, 1 update, 0 deletes, 1 schema statement");
        expect(r.stdout).toContain("verified: replaying the diff");
        expect(await checksums(admin)).toEqual(original);
      } else if (/airlock review\b/.test(command)) {
        const page = join(dir, ".airlock", "diffs", ids.id!, "review.html");
        expect(r.stdout).toContain(pathToFileURL(page).href);
        for (let i = 0; i < 50 && !existsSync(join(dir, ".test-opened")); i++) await new Promise((done) => setTimeout(done, 100));
        expect(readFileSync(join(dir, ".test-opened"), "utf8")).toBe(`${page}\n`);
      } else if (approve) {
        expect(r.out).toContain(`approved diff ${ids.id} by alice`);
      } else if (/promote .* --dry-run/.test(command)) {
        expect(r.stdout).toMatch(/^dry run of diff [0-9a-f]{12}: would apply 0 inserts, 1 update, 0 deletes, 1 schema statement without conflict/m);
        expect(await checksums(admin)).toEqual(original);
      } else if (/airlock promote\b/.test(command)) {
        const promoted = / as (p-\d{14}-[0-9a-f]{6}): /.exec(r.stdout);
        expect(promoted, r.out).not.toBeNull();
        ids.promotion = promoted![1]!;
        expect(r.stdout).toContain("read back and confirmed");
        expect(await checksums(admin)).not.toEqual(original);
      } else if (/airlock rollback\b/.test(command)) {
        expect(r.stdout).toMatch(new RegExp(`^rolled back ${ids.promotion}: 1 row restored; schema changes reversed \\(\\d+ statements?\\)$`, "m"));
        expect(await checksums(admin)).toEqual(original);
      } else if (/airlock audit --verify/.test(command)) {
        expect(r.stdout).toMatch(
          /^verified: \d+ staging entries and \d+ production entries form intact keyed chains, with \d+ anchors? between them holding$/m,
        );
        // Full ids where an id identifies something: the snapshot's and the promotion's, never cut.
        expect(r.stdout).toMatch(/ snapshot=snap-\d{8}-\d{6}-[0-9a-f]{6}\b/);
        expect(r.stdout).toContain(`promotion=${ids.promotion}`);
      } else throw new Error(`a README command this test does not check: ${line}`);
    }
    expect(ids.promotion).toBeDefined();
    // Counts read as they should: no "1 rows", "1 entries", "1 updates" anywhere.
    expect(outputs.join("\n")).not.toMatch(
      /(?<![\d.,])1 (?:rows|entries|inserts|updates|deletes|statements|schema statements|tables|columns|fields|anchors|files)\b/,
    );
  }, 600_000);
});
