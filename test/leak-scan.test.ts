/**
 * The leak scan agrees with its rules. It normalises before comparing, so a
 * masked value rewritten into a kept column (upper case, spaces removed,
 * grouped in fours) is caught while short ids are not; coincidences of common
 * words are shown by `--init-rules` up front and allowed with a reason, and
 * recorded in the manifest; and the rules `--init-rules` writes pass the scan
 * on the database they were written for — the demo dataset and a small wild
 * schema whose regions are named like cities and cities like people.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../seeders/demo/index.ts";
import { parseConfig } from "../src/config/config.ts";
import { type PgTarget, formatUrl, makeTarget, withClient } from "../src/pg/connect.ts";
import { AllowanceHasher } from "../src/snapshot/allowances.ts";
import { type CaptureOptions, captureSnapshot, initRules } from "../src/snapshot/capture.ts";
import { MIN_DIGITS } from "../src/snapshot/fingerprint.ts";
import { LeakScanner } from "../src/snapshot/leak-scan.ts";
import type { LeakAllowance, MaskRule } from "../src/config/masking-rules.ts";
import { type TestCluster, startTestCluster, testClusterDir, testRoot } from "./helpers/cluster.ts";
import { caught } from "./helpers/errors.ts";
import { CITIES, FIRST_NAMES, WILD_RULES, WILD_SQL } from "./fixtures/wild/leak-scan.ts";

const SECRET = "leak-scan-test-secret-0123456789";
const BIN = resolve("bin/airlock.mjs");
const STEP = { step: "test", searchPath: "public" } as const;
const READER_PASSWORD = "leak-reader-pw-2468";

let tc: TestCluster;
let wild: PgTarget;
let wildReader: PgTarget;
let demoReader: PgTarget;
let stateDir: string;
const projects: string[] = [];

function parseRules(input: Record<string, unknown>): Record<string, MaskRule> {
  return parseConfig({ masking: { rules: input } }).masking.rules;
}

function options(over: Partial<CaptureOptions> = {}): CaptureOptions {
  return {
    source: wildReader,
    secret: SECRET,
    rules: parseRules(WILD_RULES),
    snapshotsDir: join(stateDir, "snapshots"),
    statementTimeoutMs: 60_000,
    lockTimeoutMs: 5_000,
    sampleSize: 200,
    ...over,
  };
}

async function one<T>(target: PgTarget, sql: string, params: unknown[] = []): Promise<T> {
  return withClient(target, STEP, async (c) => (await c.query(sql, params)).rows[0] as T);
}

async function exec(target: PgTarget, sql: string, params: unknown[] = []): Promise<void> {
  await withClient(target, STEP, (c) => c.query(sql, params));
}

/** A read-only role for a database (SELECT on tables and sequences: all a capture needs). */
async function readerFor(db: string, admin: PgTarget): Promise<PgTarget> {
  await exec(admin, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO leak_reader");
  await exec(admin, "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO leak_reader");
  return makeTarget({ host: "127.0.0.1", port: tc.cluster.port, database: db, user: "leak_reader", password: READER_PASSWORD });
}

function airlock(args: readonly string[], cwd: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: "utf8", env: { ...process.env, AIRLOCK_SECRET: SECRET }, timeout: 180_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function newProject(name: string): string {
  const dir = testClusterDir(name);
  mkdirSync(dir, { recursive: true });
  projects.push(dir);
  return dir;
}

/** airlock.config.ts resolves "airlock" from node_modules in a user's project; here it is this checkout. */
function pointConfigAtCheckout(dir: string): string {
  const file = join(dir, "airlock.config.ts");
  writeFileSync(file, readFileSync(file, "utf8").replace('from "airlock"', `from ${JSON.stringify(resolve("src/index.ts"))}`));
  return readFileSync(file, "utf8");
}

beforeAll(async () => {
  tc = await startTestCluster("leak-scan");
  await exec(tc.cluster.adminTarget(), `CREATE ROLE leak_reader LOGIN PASSWORD '${READER_PASSWORD}'`);
  wild = await tc.createDatabase("wild");
  await exec(wild, WILD_SQL);
  wildReader = await readerFor("wild", wild);
  const demo = await tc.createDatabase("demo");
  await seedDemo({ target: demo, scale: 1 });
  demoReader = await readerFor("demo", demo);
  stateDir = join(testRoot(), `leak-scan-state-${process.pid}`);
  mkdirSync(stateDir, { recursive: true });
});

afterAll(async () => {
  await tc?.close();
  if (stateDir !== undefined) rmSync(stateDir, { recursive: true, force: true });
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});

describe("the leak scan compares normal forms", () => {
  const scanner = new LeakScanner();
  for (const v of [
    "ada@lovelace.org",
    "+44 20 7946 0958",
    "DE89 3704 0044 0532 0130 00",
    "4111 1111 1111 1111",
    "Springfield",
    "555-0123",
    "123456",
    "AB123456C",
  ])
    scanner.addOriginal(v);

  it.each([
    ["ADA@LOVELACE.ORG", "email"],
    ["please write to Ada@Lovelace.Org.", "email"],
    ["442079460958", "number"],
    ["call +44 (20) 7946-0958 after six", "number"],
    ["DE89370400440532013000", "iban"],
    ["refund to de89 3704 0044 0532 0130 00 please", "iban"],
    ["4111-1111-1111-1111", "number"],
    ["  SPRINGFIELD ", "word"],
    ["5550123", "number"],
    ["nino ab123456c.", "value"],
  ])("finds %j (%s)", (value, kind) => {
    expect(scanner.find(value)?.kind).toBe(kind);
  });

  it.each([["123456"], ["order 123456"], ["0958"], ["ref 207946"], ["Springfield Gardens"], ["20 79"], ["nothing to see here"]])(
    "does not match %j: short numbers and other words are not originals",
    (value) => {
      expect(scanner.find(value)).toBeUndefined();
    },
  );

  it(`counts a number only from ${MIN_DIGITS} digits`, () => {
    const s = new LeakScanner();
    s.addOriginal("12-34-56");
    s.addOriginal("123-4567");
    expect(s.find("123456")).toBeUndefined();
    expect(s.find("1234567")?.kind).toBe("number");
  });
});

describe("the leak scan agrees with its rules: a masked value rewritten into a kept column is caught", () => {
  let allow: Record<string, LeakAllowance>;

  beforeAll(async () => {
    // The region coincidence is allowed as --init-rules proposes, so only the planted values can fail a capture.
    const proposal = await initRules({
      source: wildReader,
      rules: parseRules(WILD_RULES),
      allow: {},
      secret: SECRET,
      statementTimeoutMs: 60_000,
      lockTimeoutMs: 5_000,
      sampleSize: 200,
    });
    allow = { ...proposal.allowances.allow };
    expect(Object.keys(allow)).toEqual(["public.stores.region"]);
    await captureSnapshot(options({ allow }));
  });

  async function plantAndCapture(text: string, extraAllow: Record<string, LeakAllowance> = {}) {
    await exec(wild, "UPDATE stores SET notes = $1 WHERE id = 3", [text]);
    try {
      return await caught(captureSnapshot(options({ allow: { ...allow, ...extraAllow } })));
    } finally {
      await exec(wild, "UPDATE stores SET notes = NULL WHERE id = 3");
    }
  }

  function expectCaught(err: Awaited<ReturnType<typeof plantAndCapture>>, kind: string, ...secrets: string[]) {
    expect(err.code).toBe("AIRLOCK_LEAK_DETECTED");
    expect(err.message).toContain("public.stores.notes");
    expect(err.details?.columns).toEqual([{ column: "public.stores.notes", fields: 1, kinds: [kind] }]);
    const printed = `${err.message}\n${err.hint}\n${JSON.stringify(err.toJSON())}`.toLowerCase();
    for (const s of secrets) expect(printed).not.toContain(s.toLowerCase());
  }

  it("catches an email in upper case", async () => {
    const { email } = await one<{ email: string }>(wild, "SELECT email FROM customers WHERE id = 7");
    expectCaught(await plantAndCapture(email.toUpperCase()), "email", email);
  });

  it("catches a phone number with its spaces removed, inside free text", async () => {
    const { phone } = await one<{ phone: string }>(wild, "SELECT phone FROM customers WHERE id = 8");
    const compact = phone.replace(/\s+/g, "");
    expect(compact).not.toBe(phone);
    expectCaught(await plantAndCapture(`Call ${compact} after 6pm`), "number", phone, compact);
  });

  it("catches an IBAN written in groups of four", async () => {
    const { iban } = await one<{ iban: string }>(wild, "SELECT iban FROM customers WHERE id = 9");
    const grouped = iban.replace(/(.{4})/g, "$1 ").trim();
    expect(grouped).toContain(" ");
    expectCaught(await plantAndCapture(`Refund to ${grouped} please`), "iban", iban, grouped);
  });

  it("lets an allowance through common words only, never an email", async () => {
    const { email } = await one<{ email: string }>(wild, "SELECT email FROM customers WHERE id = 10");
    const hash = new AllowanceHasher(SECRET).hash(email);
    expectCaught(await plantAndCapture(email.toUpperCase(), { "public.stores.notes": { reason: "trying to allow an email", values: [hash] } }), "email", email);
  });

  it("makes --init-rules mask a kept column that holds a copy of an identifying original, so its rules pass", async () => {
    const { email } = await one<{ email: string }>(wild, "SELECT email FROM customers WHERE id = 11");
    await exec(wild, "UPDATE stores SET notes = $1 WHERE id = 5", [`Ask ${email.toUpperCase()} about it`]);
    try {
      const rules = parseRules(WILD_RULES);
      const proposal = await initRules({ source: wildReader, rules, allow, secret: SECRET, statementTimeoutMs: 60_000, lockTimeoutMs: 5_000, sampleSize: 200 });
      const masked = proposal.allowances.masked.map(
        (s) => [`${s.column.schema}.${s.column.table}.${s.column.column}`, s.suggested, s.reasons.join(" ")] as const,
      );
      expect(masked).toEqual([["public.stores.notes", { kind: "faker", generator: "text" }, expect.stringContaining("public.customers.email")]]);
      expect(JSON.stringify(proposal).toLowerCase()).not.toContain(email.toLowerCase());
      await captureSnapshot(options({ rules: { ...rules, "public.stores.notes": masked[0]![1] }, allow: { ...allow, ...proposal.allowances.allow } }));
    } finally {
      await exec(wild, "UPDATE stores SET notes = NULL WHERE id = 5");
    }
  });

  it("never matches short numeric ids: references equal to a masked PIN or to the last digits of a masked phone pass", async () => {
    const { equal } = await one<{ equal: number }>(
      wild,
      "SELECT count(*)::int AS equal FROM orders o JOIN customers c ON o.reference IN (c.pin, right(regexp_replace(c.phone, '\\D', '', 'g'), 4), right(regexp_replace(c.phone, '\\D', '', 'g'), 6))",
    );
    expect(equal).toBeGreaterThan(500);
    const m = await captureSnapshot(options({ allow }));
    expect(m.tables.find((t) => t.name === "orders")!.columns.find((c) => c.name === "reference")!.rule).toBe("keep");
  });

  it("refuses an allowance on a masked or missing column, listing both", async () => {
    const entry = { reason: "a region named like a city", values: ["0123456789abcdef"] };
    const err = await caught(captureSnapshot(options({ allow: { ...allow, "public.customers.city": entry, "public.stores.nosuch": entry } })));
    expect(err.code).toBe("AIRLOCK_RULES_INVALID");
    expect((err.details!.problems as Array<{ path: string }>).map((p) => p.path).sort()).toEqual([
      "masking.allow.public.customers.city",
      "masking.allow.public.stores.nosuch",
    ]);
  });
});

describe("the leak scan agrees with its rules: coincidences allowed with a reason pass and are recorded in the manifest", () => {
  it("fails on a region named like a masked city without an allowance, and passes with one, which the manifest records without a value", async () => {
    const err = await caught(captureSnapshot(options()));
    expect(err.code).toBe("AIRLOCK_LEAK_DETECTED");
    expect(err.message).toContain("public.stores.region");
    expect(err.hint).toContain("--init-rules");
    const regions = (await withClient(wild, STEP, (c) => c.query("SELECT DISTINCT region FROM stores WHERE region IN (SELECT city FROM customers)"))).rows.map(
      (r) => r.region as string,
    );
    expect(regions.length).toBeGreaterThan(0);
    for (const r of regions) expect(err.message + err.hint).not.toContain(r);

    const hasher = new AllowanceHasher(SECRET);
    const reason = "region names are places shared with customer cities by chance";
    const allow = { "public.stores.region": { reason, values: regions.map((r) => hasher.hash(r)) } };
    const manifest = await captureSnapshot(options({ allow }));
    expect(manifest.leakScan.allowed).toEqual([
      { column: "public.stores.region", reason, values: regions.length, valuesMatched: regions.length, fieldsMatched: expect.any(Number) },
    ]);
    expect(manifest.leakScan.allowed![0]!.fieldsMatched).toBeGreaterThanOrEqual(regions.length);
    const stored = readFileSync(join(stateDir, "snapshots", manifest.id, "manifest.json"), "utf8");
    for (const r of regions) expect(stored).not.toContain(r);

    // One value short: the value left out fails the capture again.
    const partial = { "public.stores.region": { reason, values: regions.slice(1).map((r) => hasher.hash(r)) } };
    expect((await caught(captureSnapshot(options({ allow: partial })))).details?.columns).toEqual([
      { column: "public.stores.region", fields: expect.any(Number), kinds: ["word"] },
    ]);
    // Another secret, other hashes: nothing is allowed.
    expect((await caught(captureSnapshot(options({ allow, secret: `${SECRET}-rotated` })))).code).toBe("AIRLOCK_LEAK_DETECTED");
  });
});

describe("the leak scan agrees with its rules: `--init-rules` then `snapshot` succeeds on the same database", () => {
  it("on the demo dataset", () => {
    const dir = newProject("leak-demo");
    const init = airlock(["snapshot", "--init-rules", "--from", formatUrl(demoReader, true), "--json"], dir);
    expect(init.code, init.stderr).toBe(0);
    expect(JSON.parse(init.stdout).written).toBe(join(dir, "airlock.config.ts"));
    pointConfigAtCheckout(dir);
    const snap = airlock(["snapshot", "--from", formatUrl(demoReader, true), "--json"], dir);
    expect(snap.code, snap.stderr + snap.stdout).toBe(0);
    expect(JSON.parse(snap.stdout).leakScan.ok).toBe(true);
  });

  it("on a wild schema: regions named like cities are allowed up front; keeping the city column then shows its people-named cities", () => {
    const url = formatUrl(wildReader, true);
    const dir = newProject("leak-wild");
    const init = airlock(["snapshot", "--init-rules", "--from", url, "--json"], dir);
    expect(init.code, init.stderr).toBe(0);
    const proposal = JSON.parse(init.stdout);
    // Rules for the personal data only: no kept column had to be masked to pass the scan.
    expect(proposal.columns.map((c: { column: string }) => c.column)).toEqual(
      Object.keys(WILD_RULES)
        .map((k) => `public.${k}`)
        .sort(),
    );
    expect(proposal.unresolved).toEqual([]);
    expect(proposal.coincidences).toEqual([
      { column: "public.stores.region", equals: ["public.customers.city"], values: 5, fields: expect.any(Number), kinds: ["word"] },
    ]);
    expect(Object.keys(proposal.allow)).toEqual(["public.stores.region"]);
    // Never a value: the regions, cities and names appear neither in the output nor in the rules file.
    let config = pointConfigAtCheckout(dir);
    for (const word of [...CITIES, ...FIRST_NAMES]) expect(init.stdout + init.stderr + config).not.toContain(word);
    expect(config).toContain('"public.stores.region": {');
    expect(config).toMatch(/or mask it: "public\.stores\.region": "city"/);

    const snap = airlock(["snapshot", "--from", url, "--json"], dir);
    expect(snap.code, snap.stderr + snap.stdout).toBe(0);
    const { id } = JSON.parse(snap.stdout);
    const show = JSON.parse(airlock(["snapshot", "show", id, "--json"], dir).stdout);
    expect(show.leakScan.allowed).toEqual([
      expect.objectContaining({ column: "public.stores.region", values: 5, valuesMatched: 5, reason: expect.stringContaining("public.customers.city") }),
    ]);

    // The person keeps the borderline city column: its cities named like people now equal masked first names.
    config = config.replace('"public.customers.city": "city",', '"public.customers.city": "keep",');
    writeFileSync(join(dir, "airlock.config.ts"), config);
    const failed = airlock(["snapshot", "--from", url], dir);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^AIRLOCK_LEAK_DETECTED: .*public\.customers\.city/m);
    expect(failed.stderr).toContain("--init-rules");
    for (const word of [...CITIES, ...FIRST_NAMES]) expect(failed.stderr + failed.stdout).not.toContain(word);

    // --init-rules shows that coincidence (the config exists, so it prints the block); the allowance goes in as printed.
    const again = airlock(["snapshot", "--init-rules", "--from", url, "--json"], dir);
    expect(again.code, again.stderr).toBe(0);
    const second = JSON.parse(again.stdout);
    expect(second.written).toBeNull();
    expect(second.coincidences).toEqual([
      { column: "public.customers.city", equals: ["public.customers.first_name"], values: expect.any(Number), fields: expect.any(Number), kinds: ["word"] },
    ]);
    const entry = `"public.customers.city": ${JSON.stringify(second.allow["public.customers.city"])},`;
    writeFileSync(join(dir, "airlock.config.ts"), config.replace(/\n(\s*)allow: \{\n/, `\n$1allow: {\n$1  ${entry}\n`));
    const passed = airlock(["snapshot", "--from", url, "--json"], dir);
    expect(passed.code, passed.stderr + passed.stdout).toBe(0);
    const shown = JSON.parse(airlock(["snapshot", "show", JSON.parse(passed.stdout).id, "--json"], dir).stdout);
    expect(shown.leakScan.allowed.map((a: { column: string }) => a.column)).toEqual(["public.customers.city", "public.stores.region"]);
  });
});
