/**
 * `airlock run` sandboxes the agent (invariants 3 and 11): inside it, an
 * adversarial agent script tries to read .env, Airlock's state and the
 * cluster's superuser password, another process's environment, to reach
 * the staging superuser and production, and to approve a diff itself.
 * Every attempt must fail in the default sandbox; the same script with
 * `--sandbox none` shows which attempts would have succeeded, so the test
 * can fail. Then: the agent's environment holds no secret under any name,
 * nothing Airlock wrote holds one, and its state on disk is private.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { DEMO_MASKING_RULES } from "../seeders/demo/masking.ts";
import { findPgBinaries } from "../src/pg/binaries.ts";
import { type PgTarget, formatUrl } from "../src/pg/connect.ts";
import { defaultSandbox } from "../src/staging/sandbox.ts";
import { type TestCluster, startTestCluster, testClusterDir } from "./helpers/cluster.ts";

const BIN = resolve("bin/airlock.mjs");
const SECRET = "sandbox-test-secret-0123456789abcdef";
const haveSandbox = defaultSandbox() !== undefined;
if (!haveSandbox) console.warn("test/sandbox.test.ts: the sandbox attack test is skipped: bubblewrap (bwrap) is not installed on this machine");
let prodCluster: TestCluster;
let prod: PgTarget;
let projectDir: string;
let prodPassword: string;
/** Everything Airlock printed in this file, for the leak check. */
const printed: string[] = [];

function airlock(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: projectDir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, timeout: 180_000 });
  printed.push(r.stdout, r.stderr);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The attack, as a shell script: one line "<attempt> ok|blocked" each. */
function attackScript(diffId: string): string {
  const psql = findPgBinaries().tool("psql");
  return `#!/bin/sh
try() { name=$1; shift; if ( "$@" ) >/dev/null 2>&1; then echo "ATTEMPT $name ok"; else echo "ATTEMPT $name blocked"; fi; }
try read-env sh -c 'grep -q AIRLOCK_SECRET .env'
try read-cluster-password sh -c 'test -s .airlock/cluster/superuser.password && cat .airlock/cluster/superuser.password'
try read-sessions sh -c 'ls .airlock/sessions/*.json && cat .airlock/sessions/*.json | grep -q agentPassword'
try read-snapshot sh -c 'cat .airlock/snapshots/*/manifest.json | grep -q secretFingerprint'
try read-environ sh -c 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\\0" "\\n" | grep -q "^AIRLOCK_SECRET="'
try superuser-socket sh -c 'PGPASSWORD=$(cat .airlock/cluster/superuser.password 2>/dev/null) ${psql} -h "$(pwd)/.airlock/cluster/run" -p "$(grep -o "\\"port\\": [0-9]*" .airlock/cluster/cluster.json | grep -o "[0-9]*")" -U airlock -d postgres -Atc "select 1" | grep -q 1'
try production sh -c '. ./.env && ${psql} "$PROD_DATABASE_URL" -Atc "select 1" | grep -q 1'
try approve sh -c 'node ${BIN} approve ${diffId} --yes --by agent'
env > agent-env.txt
`;
}

function attempts(stdout: string): Record<string, "ok" | "blocked"> {
  return Object.fromEntries([...stdout.matchAll(/ATTEMPT (\S+) (ok|blocked)/g)].map((m) => [m[1]!, m[2] as "ok" | "blocked"]));
}

/** Every file under a directory (not following links). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) out.push(...filesUnder(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

beforeAll(async () => {
  prodCluster = await startTestCluster("sandbox-prod");
  prod = await prodCluster.createDatabase("production");
  await seedDemo({ target: prod, scale: 1 });
  const tcp = prodCluster.cluster.tcpTarget("production");
  prodPassword = tcp.password!;
  projectDir = testClusterDir("sandbox-project");
  mkdirSync(projectDir, { recursive: true });
  chmodSync(projectDir, 0o755);
  writeFileSync(join(projectDir, "airlock.config.ts"), `export default { masking: { rules: ${JSON.stringify(DEMO_MASKING_RULES)} } };\n`);
  // The secrets live in .env, as the README says to keep them; one is copied under an innocent name.
  writeFileSync(
    join(projectDir, ".env"),
    `PROD_DATABASE_URL=${formatUrl(tcp, true)}\nAIRLOCK_SECRET=${SECRET}\nAPP_SIGNING_KEY=${SECRET}\nDEPLOY_URL=postgres://deploy:${encodeURIComponent(prodPassword)}@elsewhere:5432/x\n`,
  );
  expect(airlock("snapshot").code).toBe(0);
}, 180_000);

afterAll(async () => {
  if (projectDir !== undefined) airlock("cluster", "destroy", "--erase");
  await prodCluster?.close();
});

describe("3/11. the agent in `airlock run` gets the staging URL and nothing else, and cannot read Airlock's secrets or state", () => {
  it.skipIf(!haveSandbox)(
    "every attempt to reach secrets, state, the superuser, production or approval fails in the sandbox; without it they succeed",
    () => {
      // A verified diff for the agent to try to approve.
      const first = airlock("run", "--name", "first", "--", "sh", "-c", "psql_unused=1; true");
      expect(first.code, first.stderr).toBe(0);
      const diffs = readdirSync(join(projectDir, ".airlock", "diffs")).filter((d) => /^[0-9a-f]{64}$/.test(d));
      expect(diffs.length).toBe(1);
      const diffId = diffs[0]!;
      writeFileSync(join(projectDir, "attack.sh"), attackScript(diffId));

      const boxed = airlock("run", "--name", "boxed", "--", "sh", "attack.sh");
      const inBox = attempts(boxed.stdout);
      console.log("in the sandbox:", inBox);
      expect(Object.keys(inBox).length).toBe(8);
      expect(Object.entries(inBox).filter(([, r]) => r === "ok")).toEqual([]);
      expect(existsSync(join(projectDir, ".airlock", "diffs", diffId, "approval.json"))).toBe(false);
      // The agent's environment: the session's URL, and no secret under any name.
      const env = readFileSync(join(projectDir, "agent-env.txt"), "utf8");
      expect(env).toContain("DATABASE_URL=postgres://");
      expect(env).not.toContain(SECRET);
      expect(env).not.toContain(prodPassword);
      expect(env).not.toContain(encodeURIComponent(prodPassword));
      expect(env).not.toMatch(/^(PROD_DATABASE_URL|APP_SIGNING_KEY|DEPLOY_URL)=/m);

      // The control: the same agent without a sandbox reads what the sandbox hid.
      const open = airlock("run", "--name", "open", "--sandbox", "none", "--", "sh", "attack.sh");
      expect(open.stderr).toMatch(/WITHOUT a sandbox/);
      const outside = attempts(open.stdout);
      console.log("without a sandbox:", outside);
      for (const a of ["read-env", "read-cluster-password", "read-sessions", "read-snapshot", "superuser-socket", "production", "approve"])
        expect(outside[a], a).toBe("ok");
      const audit = readFileSync(join(projectDir, ".airlock", "audit.jsonl"), "utf8");
      expect(audit).toMatch(/"sandbox":"none"/);
    },
    240_000,
  );

  it("nothing Airlock printed or wrote holds the production password or AIRLOCK_SECRET", () => {
    const leaks: string[] = [];
    for (const text of printed) if (text.includes(prodPassword) || text.includes(SECRET)) leaks.push(text.slice(0, 200));
    for (const file of filesUnder(join(projectDir, ".airlock"))) {
      let bytes = readFileSync(file);
      if (file.endsWith(".gz")) bytes = gunzipSync(bytes);
      if (bytes.includes(prodPassword) || bytes.includes(SECRET)) leaks.push(file);
    }
    expect(leaks).toEqual([]);
  });

  it("Airlock's state on disk is private: files 0600, directories 0700 (the state root and cluster directory 0711)", () => {
    const root = join(projectDir, ".airlock");
    const open: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const p = join(dir, name);
        const st = lstatSync(p);
        if (st.isSymbolicLink()) continue;
        const mode = st.mode & 0o777;
        if (st.isDirectory()) {
          const expected = p === join(root, "cluster") ? 0o711 : 0o700;
          if (mode !== expected) open.push(`${p} ${mode.toString(8)}`);
          walk(p);
        } else if ((mode & 0o077) !== 0 && !st.isSocket()) open.push(`${p} ${mode.toString(8)}`);
      }
    };
    expect((lstatSync(root).mode & 0o777).toString(8)).toBe("711");
    walk(root);
    expect(open).toEqual([]);
  });
});
