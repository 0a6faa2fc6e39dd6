/**
 * Progress on every long step (issue 20), through the CLI on the demo dataset at 200,000 bookings: on a
 * terminal (a pseudo-terminal made by util-linux `script`, which, like some CI runners, reports no width) a
 * live line names each phase; in a log (stderr not a terminal) each phase is one plain line with the time it
 * started; with --json nothing but the JSON is printed, on a terminal too. No password and no secret is ever
 * part of it.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEMO_TABLES } from "../seeders/demo/counts.ts";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { formatUrl } from "../src/pg/connect.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";

const BIN = resolve("bin/airlock.mjs");
const AGENT = resolve("seeders/demo/agent.mjs");
const SECRET = "progress-test-secret-0123456789abcdef";
let prodCluster: TestCluster;
let projectDir: string;
let env: NodeJS.ProcessEnv;
let prodPassword: string;
/** The snapshots the sessions start from: each one's first `up` restores its template. */
const snapshots: { quiet: string; logged: string } = { quiet: "", logged: "" };
let snapshotLog = "";
/** The diff of session x (the demo agent's fix), once computed. */
let diffId = "";

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const MiB = 1024 * 1024;

/** `airlock <args>` with stdout and stderr as pipes (a log, or a program reading --json). */
function inLog(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: projectDir, env, encoding: "utf8", timeout: 240_000, maxBuffer: 64 * MiB });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `airlock <args>` on a pseudo-terminal (stdout and stderr both on it): what a person sees, escapes removed. */
function onTerminal(...args: string[]) {
  const command = [process.execPath, BIN, ...args].map(quote).join(" ");
  const r = spawnSync("script", ["-qfec", command, "/dev/null"], {
    cwd: projectDir,
    env: { ...env, TERM: "xterm-256color" },
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 240_000,
    maxBuffer: 64 * MiB,
  });
  // eslint-disable-next-line no-control-regex
  const text = r.stdout.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "\n").replace(/\r/g, "");
  return { code: r.status, raw: r.stdout, text };
}

/** A log's progress lines: `airlock <command>: <phase> (at 1.2 s)`, then `… done in 7.0 s`. */
function phaseLines(stderr: string, command: string): string[] {
  const lines = stderr.split("\n").filter((l) => l.startsWith(`airlock ${command}: `));
  return lines.map((l) => l.slice(`airlock ${command}: `.length));
}

function expectClean(output: string): void {
  expect(output).not.toContain(SECRET);
  expect(output).not.toContain(prodPassword);
}

const DIFF_PHASES = [
  "reading and comparing the schemas of base and work",
  "cloning base and applying the schema changes to it",
  "finding the tables whose rows changed",
  "comparing rows",
  "looking for hazards",
  "replaying the diff on a fresh clone of base",
  "verifying the replay against work (catalog and rows)",
];
const PROMOTE_PHASES = [
  "connecting to production",
  "checking the approval and the role's privileges",
  "locking the rows the diff touches and checking them against the snapshot",
  "saving what the diff changes, for a rollback",
  "applying the diff",
  "recording the way back and the audit entry",
];
const ROLLBACK_PHASES = [
  "connecting to production",
  "checking that no row the promotion wrote changed since",
  "putting the saved rows back",
  "reversing the schema changes",
  "checking that the schema is production's from before the promotion",
  "committing",
];

beforeAll(async () => {
  prodCluster = await startTestCluster("progress-prod");
  const prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 200 });
  projectDir = testClusterDir("progress-project");
  mkdirSync(projectDir, { recursive: true });
  chmodSync(projectDir, 0o755);
  writeFileSync(join(projectDir, "airlock.config.ts"), `export default { masking: { rules: ${JSON.stringify(DEMO_MASKING_RULES)} } };\n`);
  const url = formatUrl(prodCluster.cluster.tcpTarget("production"), true);
  prodPassword = decodeURIComponent(new URL(url).password);
  expect(prodPassword).not.toBe("");
  env = { ...process.env, PROD_DATABASE_URL: url, AIRLOCK_SECRET: SECRET };
  const quiet = inLog("snapshot", "--json");
  expect(quiet.code, quiet.stderr).toBe(0);
  expect(quiet.stderr).toBe("");
  snapshots.quiet = (JSON.parse(quiet.stdout) as { id: string }).id;
  const logged = inLog("snapshot");
  expect(logged.code, logged.stderr).toBe(0);
  snapshots.logged = /snapshot (snap-\S+):/.exec(logged.stdout)![1]!;
  snapshotLog = logged.stderr;
}, 300_000);

afterAll(async () => {
  if (projectDir !== undefined) {
    spawnSync(process.execPath, [BIN, "cluster", "destroy", "--erase"], { cwd: projectDir, env });
    rmSync(projectDir, { recursive: true, force: true });
  }
  await prodCluster?.close();
});

describe("progress at 200,000 bookings: a live line on a terminal, one line per phase in a log, nothing extra with --json", () => {
  it("snapshot prints one plain line per phase when stderr is not a terminal, and nothing with --json", () => {
    expect(phaseLines(snapshotLog, "snapshot").map((l) => l.replace(/ \(at \d+\.\d s\)$/, ""))).toEqual([
      "checking privileges and looking for unruled personal data",
      "dumping the schema",
      "copying and masking 6 tables",
      "scanning the snapshot for leaks",
      "writing checksums",
      expect.stringMatching(/^done in \d+\.\d s$/),
    ]);
    // Not a line per table or per row, and no terminal escapes in a log.
    expect(snapshotLog).not.toContain("public.bookings");
    expect(snapshotLog).not.toContain("\x1b");
    expectClean(snapshotLog);
  });

  it("seed-demo prints a line as each table is loaded when stderr is not a terminal, and nothing with --json", async () => {
    // `airlock seed-demo` at scale 20 into a new database of its own.
    const seedInto = async (database: string) => [
      "seed-demo",
      "--to",
      formatUrl(prodCluster.cluster.tcpTarget((await prodCluster.createDatabase(database)).database), true),
      "--scale",
      "20",
    ];
    const logged = inLog(...(await seedInto("seeded-log")));
    expect(logged.code, logged.stderr).toBe(0);
    const lines = phaseLines(logged.stderr, "seed-demo").map((l) => l.replace(/ \(at \d+\.\d s\)$/, ""));
    expect(lines[0]).toBe("loading the tables");
    const done = lines.slice(1, -1).map((l, i) => new RegExp(`^loading the tables: ${i + 1} done, the last (\\w+) \\([\\d,]+ rows\\)$`).exec(l)?.[1]);
    expect(done.sort()).toEqual([...DEMO_TABLES].sort());
    expect(lines.at(-1)).toMatch(/^done in \d+\.\d s$/);
    expect(logged.stderr).not.toContain("\x1b");
    expectClean(logged.stderr);

    const quiet = inLog("--json", ...(await seedInto("seeded-json")));
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).toBe("");
    expect(JSON.parse(quiet.stdout)).toMatchObject({ scale: 20 });
  }, 120_000);

  it("up shows the template restore's phases on a terminal, and prints nothing but the JSON with --json", () => {
    // The first session of a snapshot restores it into its template: 200,000 bookings take seconds.
    const up = onTerminal("up", "--name", "first", "--snapshot", snapshots.logged);
    expect(up.code, up.text).toBe(0);
    for (const phase of [
      "opening the staging cluster",
      "restoring the snapshot into its template, once for all its sessions",
      "checking the restored schema against production's",
      "copying the template into the session's base and work databases",
    ])
      expect(up.text, phase).toContain(phase);
    expect(up.text).toMatch(/restoring the snapshot into its template, once for all its sessions: \d+% of the data, public\.\w+/);
    expect(up.text).toContain("session first (local, snapshot");
    expectClean(up.text);

    const quiet = inLog("up", "--name", "quiet", "--snapshot", snapshots.quiet, "--json");
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stderr).toBe("");
    expect(JSON.parse(quiet.stdout)).toMatchObject({ id: "quiet", snapshotId: snapshots.quiet });
  }, 300_000);

  it("diff prints its phases on a terminal, one plain line per phase in a log, and nothing but the JSON with --json", () => {
    const run = inLog("run", "--name", "x", "--sandbox", "none", "--snapshot", snapshots.quiet, "--", process.execPath, AGENT, "fix");
    expect(run.code, run.stderr).toBe(0);
    // `run` logs its session's phases, then its diff's.
    expect(phaseLines(run.stderr, "run")).toEqual(
      expect.arrayContaining([expect.stringMatching(/^copying the template into/), expect.stringMatching(/^comparing rows \(at/)]),
    );

    const shown = onTerminal("diff", "x");
    expect(shown.code, shown.text).toBe(0);
    for (const phase of DIFF_PHASES) expect(shown.text, phase).toContain(phase);
    expect(shown.text).toContain("comparing rows: public.bookings");
    expect(shown.text).toContain("verified: replaying the diff on a fresh clone of base reproduces work exactly");
    expectClean(shown.text);

    const logged = inLog("diff", "x");
    expect(logged.code, logged.stderr).toBe(0);
    expect(phaseLines(logged.stderr, "diff")).toEqual([
      ...DIFF_PHASES.map((p) => expect.stringMatching(new RegExp(`^${p.replace(/[()]/g, "\\$&")} \\(at \\d+\\.\\d s\\)$`))),
      expect.stringMatching(/^done in \d+\.\d s$/),
    ]);
    expect(logged.stderr).not.toContain("\x1b");
    expect(logged.stdout).toContain("verified:");

    // --json: nothing but the JSON, whether stderr is a terminal or not.
    const json = inLog("diff", "x", "--json");
    expect(json.code, json.stderr).toBe(0);
    expect(json.stderr).toBe("");
    const diff = JSON.parse(json.stdout) as { id: string; verified: boolean };
    expect(diff.verified).toBe(true);
    diffId = diff.id;
    const jsonOnTerminal = onTerminal("diff", "x", "--json");
    expect(jsonOnTerminal.code, jsonOnTerminal.raw).toBe(0);
    expect(jsonOnTerminal.raw).not.toContain("\x1b");
    expect(JSON.parse(jsonOnTerminal.raw.replace(/\r/g, ""))).toMatchObject({ id: diff.id, verified: true });
  }, 300_000);

  it("promote and rollback show their phases on a terminal, and print nothing but the JSON with --json", () => {
    expect(diffId, "the diff test ran first").not.toBe("");
    const diff = diffId.slice(0, 12);
    expect(inLog("approve", diff, "--by", "reviewer", "--yes").code).toBe(0);

    const dry = inLog("promote", diff, "--dry-run");
    expect(dry.code, dry.stderr).toBe(0);
    expect(phaseLines(dry.stderr, "promote").map((l) => l.replace(/ \(at \d+\.\d s\)$/, ""))).toEqual([
      ...PROMOTE_PHASES,
      "rolling the dry run back",
      expect.stringMatching(/^done in \d+\.\d s$/),
    ]);

    const promoted = onTerminal("promote", diff);
    expect(promoted.code, promoted.text).toBe(0);
    for (const phase of [...PROMOTE_PHASES, "committing", "reading the promoted rows back"]) expect(promoted.text, phase).toContain(phase);
    expectClean(promoted.text);
    const promotion = /undo with: airlock rollback (p-\S+)/.exec(promoted.text)![1]!;
    const rolledBack = onTerminal("rollback", promotion);
    expect(rolledBack.code, rolledBack.text).toBe(0);
    for (const phase of ROLLBACK_PHASES) expect(rolledBack.text, phase).toContain(phase);
    expect(rolledBack.text).toContain(`rolled back ${promotion}`);
    expectClean(rolledBack.text);

    // An approval authorises one promotion: a new one for the --json round.
    expect(inLog("approve", diff, "--by", "reviewer", "--yes").code).toBe(0);
    const quietPromote = inLog("promote", diff, "--json");
    expect(quietPromote.code, quietPromote.stderr).toBe(0);
    expect(quietPromote.stderr).toBe("");
    const again = (JSON.parse(quietPromote.stdout) as { promotionId: string }).promotionId;
    const quietRollback = inLog("rollback", again, "--json");
    expect(quietRollback.code, quietRollback.stderr).toBe(0);
    expect(quietRollback.stderr).toBe("");
    expect(JSON.parse(quietRollback.stdout)).toMatchObject({ promotionId: again });
  }, 300_000);
});
