/**
 * Diffs, approvals and the audit trail cannot be forged, reused or erased
 * quietly (invariants 4, 7 and 11), against a real "production" cluster:
 * the attacks of someone who can write `.airlock/` (or production's airlock
 * schema) but does not hold AIRLOCK_SECRET, each refused or detected, with
 * production unchanged where it is refused — every table's rows and
 * `pg_dump --schema-only`.
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJournal, readUnauthenticated, verifyJournal } from "../src/audit/journal.ts";
import { auditTrails } from "../src/audit/verify.ts";
import { readDiff } from "../src/diff/store.ts";
import { withClient } from "../src/pg/connect.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { readProductionLog } from "../src/promote/production-schema.ts";
import { promoteDiff } from "../src/promote/promote.ts";
import { rollbackPromotion } from "../src/promote/rollback.ts";
import { createSession, destroySession } from "../src/staging/sessions.ts";
import { caught } from "./helpers/errors.ts";
import {
  SECRET,
  prodCluster,
  prod,
  prodUrl,
  project,
  prodQuery,
  productionState,
  airlock,
  agentDiff,
  approveAccepting,
  promote,
  tallyCount,
  startTrustProduction,
  stopTrustProduction,
} from "./helpers/trust-production.ts";
import {
  fileDiff,
  fileForgedDiff,
  copyToAnotherMachine,
  verifyCli,
  detects,
  stagingFiles,
  restoreStaging,
  deleteStagingTrail,
  rewriteStagingTrailUnkeyed,
  keepProductionTrail,
  DROP_AUDIT_TABLES,
  RESTORE_AUDIT_TABLES,
} from "./helpers/trust-attacks.ts";

beforeAll(startTrustProduction);
afterAll(stopTrustProduction);

describe("every attempt is recorded, and a refusal says exactly what it wrote to production", () => {
  it("a refused promotion leaves no airlock schema unless it recorded something there, and says what it wrote", async () => {
    const id = await agentDiff("fresh-refusal", "UPDATE items SET qty = 100 WHERE id = 1;");
    // Refused before production is reached: nothing there, not even a schema.
    const before = await productionState();
    const unapproved = await caught(promote(id));
    expect([unapproved.code, unapproved.exitCode]).toEqual(["AIRLOCK_NOT_APPROVED", 2]);
    expect(await productionState()).toEqual(before);
    expect(readJournal(project).at(-1)).toMatchObject({
      action: "promote-refused",
      details: { diff: id, code: "AIRLOCK_NOT_APPROVED", production: "not reached" },
    });

    // Refused in production (a conflict): recorded there in its own small transaction, and the message says so.
    approveDiff(project, id, { by: "reviewer" });
    await prodQuery("UPDATE items SET qty = 7 WHERE id = 1");
    const conflicted = await productionState();
    const refused = await caught(promote(id));
    expect([refused.code, refused.exitCode]).toEqual(["AIRLOCK_CONFLICT", 2]);
    expect(refused.message).toContain(
      "recorded there as entry 1 of airlock.audit_log (which created the airlock schema with its audit tables, airlock.audit_log and airlock.audit_head), and nothing else was written",
    );
    expect(await prodQuery("SELECT table_name::text AS t FROM information_schema.tables WHERE table_schema = 'airlock' ORDER BY 1")).toEqual([
      { t: "audit_head" },
      { t: "audit_log" },
    ]);
    const after = await productionState({ withoutAuditLog: true });
    expect(after.rows).toEqual(conflicted.rows);
    const log = await withClient(prod, { step: "test", searchPath: "public" }, (c) => readProductionLog(c));
    expect(log.entries.map((e) => e.action)).toEqual(["promote-refused"]);
    expect(readJournal(project).at(-1)).toMatchObject({
      action: "promote-refused",
      details: { code: "AIRLOCK_CONFLICT", productionEntry: { seq: 1, hash: log.entries[0]!.hash } },
    });
    await prodQuery("UPDATE items SET qty = 1 WHERE id = 1");
    // The conflict did not use the approval up.
    const ok = await promote(id);
    expect(ok.confirmed).toBe(true);
    await rollbackPromotion(project, ok.promotionId, { to: prod, by: "tester" });
  });

  it("a refused promote, a dry run and a lock-timeout failure each leave an audit entry", async () => {
    const id = await agentDiff("attempts", "UPDATE items SET qty = 200 WHERE id = 2;");
    approveDiff(project, id, { by: "reviewer" });
    const dry = await promote(id, { dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(readJournal(project).at(-1)).toMatchObject({
      action: "promote-dry-run",
      details: { diff: id, approval: dry.approvalId, production: "rolled back" },
    });
    // Someone holds the row: the promotion gives up after lock_timeout.
    await withClient(prodCluster.cluster.adminTarget("production"), { step: "test-holder", searchPath: "public" }, async (holder) => {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM items WHERE id = 2 FOR UPDATE");
      const err = await caught(promote(id));
      expect(err.code).toBe("AIRLOCK_LOCK_TIMEOUT");
      await holder.query("ROLLBACK");
    });
    expect(readJournal(project).at(-1)).toMatchObject({
      action: "promote-failed",
      details: { diff: id, approval: dry.approvalId, code: "AIRLOCK_LOCK_TIMEOUT", sqlstate: "55P03", production: "rolled back" },
    });
    // Neither the dry run nor the failure used the approval up; the promotion does, and a second one is refused.
    const ok = await promote(id);
    const used = await caught(promote(id));
    expect([used.code, used.exitCode]).toEqual(["AIRLOCK_APPROVAL_USED", 2]);
    expect(readJournal(project).at(-1)).toMatchObject({
      action: "promote-refused",
      details: { code: "AIRLOCK_APPROVAL_USED", productionEntry: expect.objectContaining({ seq: expect.any(Number) }) },
    });
    await rollbackPromotion(project, ok.promotionId, { to: prod, by: "tester" });
    const twice = await caught(rollbackPromotion(project, ok.promotionId, { to: prod, by: "tester" }));
    expect(twice.code).toBe("AIRLOCK_ALREADY_ROLLED_BACK");
    expect(readJournal(project).at(-1)).toMatchObject({
      action: "rollback-refused",
      details: { promotion: ok.promotionId, code: "AIRLOCK_ALREADY_ROLLED_BACK" },
    });
    expect(verifyJournal(project).ok).toBe(true);
  });
});

describe("a diff or an approval that Airlock did not make is refused, and production is unchanged", () => {
  it("a forged diff (CREATE ROLE … SUPERUSER, verified: true) with a hand-written approval is refused by the CLI with exit 2", async () => {
    const real = readDiff(project, await agentDiff("forge-base", "INSERT INTO items (id, label) VALUES (900, 'real');"));
    const { forgedId, dir } = fileForgedDiff(real.diff);
    const before = await productionState();

    // Without a MAC, with the real diff's MAC copied beside it, and with a made-up one: each refused, naming the diff's MAC.
    for (const mac of [undefined, readFileSync(join(real.dir, "diff.mac"), "utf8"), `${"ab".repeat(32)}\n`]) {
      if (mac === undefined) rmSync(join(dir, "diff.mac"), { force: true });
      else writeFileSync(join(dir, "diff.mac"), mac);
      const r = await airlock(["promote", forgedId, "--to", prodUrl]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^AIRLOCK_DIFF_NOT_AUTHENTIC: diff [0-9a-f]{12}('s MAC does not hold| has no MAC)/m);
      const approve = await airlock(["approve", forgedId, "--by", "mallory", "--yes"]);
      expect(approve.code).toBe(2);
      expect(approve.stderr).toMatch(/^AIRLOCK_DIFF_NOT_AUTHENTIC/m);
    }
    expect(await productionState()).toEqual(before);
    expect(await prodQuery("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = 'forged'")).toEqual([{ n: 0 }]);
    // Each attempt is in the staging trail.
    expect(readJournal(project).filter((e) => e.action === "promote-refused" && e.details.code === "AIRLOCK_DIFF_NOT_AUTHENTIC")).toHaveLength(3);
    rmSync(dir, { recursive: true, force: true });
  });

  it("the MAC binds the verification result: a diff whose verified flag or content was edited is refused beside its original MAC", async () => {
    const real = readDiff(project, await agentDiff("flip", "UPDATE items SET label = 'x' WHERE id = 3;"));
    const edits = [
      { ...real.diff, verification: { ...real.diff.verification, verified: false } },
      { ...real.diff, verification: { ...real.diff.verification, schemaDifference: ["edited"] } },
      { ...real.diff, tables: real.diff.tables.map((t) => ({ ...t, changes: [] })) },
    ];
    for (const edited of edits) {
      const { id, dir } = fileDiff(edited);
      cpSync(join(real.dir, "diff.mac"), join(dir, "diff.mac"));
      expect((await caught(() => approveDiff(project, id, { by: "mallory" }))).code).toBe("AIRLOCK_DIFF_NOT_AUTHENTIC");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an approval copied from another diff is refused, verbatim or with its diff id substituted, and so is an edited one", async () => {
    const a = await agentDiff("copy-a", "UPDATE items SET qty = 11 WHERE id = 11;");
    const b = await agentDiff("copy-b", "UPDATE items SET qty = 12 WHERE id = 12;");
    approveDiff(project, b, { by: "reviewer" });
    const before = await productionState();
    const fileA = join(project.statePath("diffs", a), "approval.json");
    const original = JSON.parse(readFileSync(join(project.statePath("diffs", b), "approval.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(fileA, JSON.stringify(original));
    const verbatim = await caught(promote(a));
    expect([verbatim.code, verbatim.exitCode]).toEqual(["AIRLOCK_APPROVAL_MISMATCH", 2]);
    writeFileSync(fileA, JSON.stringify({ ...original, diffId: a }));
    const substituted = await caught(promote(a));
    expect([substituted.code, substituted.exitCode]).toEqual(["AIRLOCK_APPROVAL_NOT_AUTHENTIC", 2]);
    expect(substituted.message).toContain("does not carry a valid MAC");
    const cli = await airlock(["promote", a, "--to", prodUrl]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/^AIRLOCK_APPROVAL_NOT_AUTHENTIC/m);
    // The MAC covers the approver, the accepted hazards and the note too.
    const fileB = join(project.statePath("diffs", b), "approval.json");
    for (const edit of [{ approvedBy: "someone else" }, { accepted: ["BULK_DELETE"] }, { note: "edited" }, { id: "appr-other" }]) {
      writeFileSync(fileB, JSON.stringify({ ...original, ...edit }));
      expect((await caught(promote(b))).code).toBe("AIRLOCK_APPROVAL_NOT_AUTHENTIC");
    }
    writeFileSync(fileB, JSON.stringify(original));
    expect(await productionState()).toEqual(before);
  });

  it("diff, approve and promote refuse without AIRLOCK_SECRET, and approve and promote refuse under another one", async () => {
    const id = await agentDiff("no-secret", "UPDATE items SET qty = 13 WHERE id = 13;");
    const env = { ...process.env };
    delete env.AIRLOCK_SECRET;
    // A session that exists: an unknown one is named first (arguments are checked in the order a user reads them).
    const session = await createSession(project, { name: "no-secret-diff" });
    for (const args of [
      ["diff", session.id],
      ["approve", id, "--by", "x", "--yes"],
      ["promote", id, "--to", prodUrl],
    ]) {
      const r = await airlock(args, env);
      expect(r.code, args[0]).toBe(2);
      expect(r.stderr).toMatch(/^AIRLOCK_SECRET_MISSING: .*needs AIRLOCK_SECRET/m);
      expect(r.stderr).toContain("hint: set AIRLOCK_SECRET");
    }
    await destroySession(project, session.id);
    const other = { ...process.env, AIRLOCK_SECRET: "another-secret-0123456789abcdef" };
    for (const args of [
      ["approve", id, "--by", "x", "--yes"],
      ["promote", id, "--to", prodUrl],
    ]) {
      const r = await airlock(args, other);
      expect(r.code, args[0]).toBe(2);
      expect(r.stderr).toMatch(/^AIRLOCK_SECRET_MISMATCH/m);
    }
  });
});

describe("an approval authorises one promotion, enforced in production", () => {
  it("one approval, one promotion: reusing it after its promotion is refused (CLI exit 2), production unchanged", async () => {
    const id = await agentDiff("reuse", "INSERT INTO tally VALUES (42);");
    approveAccepting(id);
    const n = await tallyCount();
    const first = await airlock(["promote", id, "--to", prodUrl, "--json"]);
    expect(first.code, first.stderr).toBe(0);
    expect(await tallyCount()).toBe(n + 1);
    const before = await productionState({ withoutAuditLog: true });
    for (let i = 0; i < 2; i++) {
      const again = await airlock(["promote", id, "--to", prodUrl]);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/^AIRLOCK_APPROVAL_USED: approval appr-[0-9a-f]+ \(by reviewer\) was used already by promotion p-/m);
      expect(again.stderr).toMatch(/the refusal was recorded there as entry \d+ of airlock\.audit_log, and nothing else was written/);
      // A dry run with a used approval is refused as well.
      expect((await caught(promote(id, { dryRun: true }))).code).toBe("AIRLOCK_APPROVAL_USED");
    }
    expect(await productionState({ withoutAuditLog: true })).toEqual(before);
    expect(await tallyCount()).toBe(n + 1);
    await rollbackPromotion(project, String(JSON.parse(first.stdout).promotionId), { to: prod, by: "tester" });
  });

  it("after a rollback the same approval is refused; a new approval promotes again", async () => {
    const id = await agentDiff("after-rollback", "INSERT INTO items (id, label) VALUES (901, 'after rollback');");
    const approval = approveDiff(project, id, { by: "reviewer" });
    const landed = async () => (await prodQuery("SELECT count(*)::int AS n FROM items WHERE id = 901"))[0]!.n;
    const p = await promote(id);
    expect(await landed()).toBe(1);
    await rollbackPromotion(project, p.promotionId, { to: prod, by: "tester" });
    expect(await landed()).toBe(0);
    const before = await productionState({ withoutAuditLog: true });
    const reused = await caught(promote(id));
    expect([reused.code, reused.exitCode]).toEqual(["AIRLOCK_APPROVAL_USED", 2]);
    expect(reused.details).toMatchObject({ approval: approval.id, usedBy: p.promotionId });
    expect(await productionState({ withoutAuditLog: true })).toEqual(before);
    const renewed = approveDiff(project, id, { by: "reviewer" });
    expect(renewed.id).not.toBe(approval.id);
    const q = await promote(id);
    expect(q.approvalId).toBe(renewed.id);
    expect(await landed()).toBe(1);
    await rollbackPromotion(project, q.promotionId, { to: prod, by: "tester" });
  });

  it("two promote processes racing with the same approval: exactly one succeeds", async () => {
    const id = await agentDiff("race", "INSERT INTO tally VALUES (44);");
    const approval = approveAccepting(id);
    const n = await tallyCount();
    const [x, y] = await Promise.all([airlock(["promote", id, "--to", prodUrl, "--json"]), airlock(["promote", id, "--to", prodUrl, "--json"])]);
    const codes = [x.code, y.code].sort();
    expect(codes[0], `${x.stderr}\n${y.stderr}`).toBe(0);
    expect(codes[1]).not.toBe(0);
    const loser = x.code === 0 ? y : x;
    expect(loser.stdout + loser.stderr).toMatch(/AIRLOCK_APPROVAL_USED|AIRLOCK_PROMOTION_BUSY/);
    expect(await tallyCount()).toBe(n + 1);
    expect(await prodQuery("SELECT count(*)::int AS n FROM airlock.used_approvals WHERE approval_id = $1", [approval.id])).toEqual([{ n: 1 }]);
    // Both processes wrote to the staging trail at once; it is still one intact chain.
    expect(verifyJournal(project).ok).toBe(true);
    const winner = JSON.parse((x.code === 0 ? x : y).stdout) as { promotionId: string };
    await rollbackPromotion(project, winner.promotionId, { to: prod, by: "tester" });
  });

  it("an approval used from one machine is refused from another (a copy of .airlock), by production itself", async () => {
    const id = await agentDiff("two-machines", "INSERT INTO tally VALUES (45);");
    approveAccepting(id);
    const { other, otherDir } = await copyToAnotherMachine("trust-other-machine");
    try {
      const p = await promote(id);
      const n = await tallyCount();
      const err = await caught(promoteDiff(other, id, { to: prod, secret: SECRET, by: "elsewhere" }));
      expect([err.code, err.exitCode]).toEqual(["AIRLOCK_APPROVAL_USED", 2]);
      expect(await tallyCount()).toBe(n);
      await rollbackPromotion(project, p.promotionId, { to: prod, by: "tester" });
      // That refusal is anchored to the other machine's trail: checked as a chain here, not against this trail.
      const report = await auditTrails(project, { to: prod, verify: true });
      expect(report.problems).toEqual([]);
      expect(report.anchors!.otherTrails).toEqual([expect.stringContaining(other.statePath())]);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});

describe("tampering with either audit trail is detected from the other", () => {
  it("both trails verify with their anchors; without a production URL the output says production was not checked", async () => {
    const r = await verifyCli();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/verified: \d+ staging entries and \d+ production entries form intact keyed chains, with \d+ anchors between them holding/);
    const local = await airlock(["audit", "--verify"]);
    expect(local.code, local.stderr).toBe(0);
    expect(local.stdout).toContain("production was not checked (no --to and no PROD_DATABASE_URL)");
    expect(local.stdout).toContain("production was NOT checked");
  });

  it("deleting audit.jsonl and audit.head together", async () => {
    const saved = stagingFiles();
    await detects(
      deleteStagingTrail,
      /production entry \d+ \(promote p-[^)]*\) was written when the staging trail had \d+ entries; it has 0 now: the staging trail lost entries or was deleted/,
      () => restoreStaging(saved),
    );
  });

  it("dropping entry 2, editing entry 3 and recomputing the unkeyed sha256 chain and head", async () => {
    const saved = stagingFiles();
    await detects(
      () => rewriteStagingTrailUnkeyed(saved.journal),
      /staging audit trail: entry 1 \([a-z-]+\) does not carry a valid MAC/,
      () => restoreStaging(saved),
    );
  });

  it("deleting the rows of airlock.audit_log and airlock.audit_head", async () => {
    const restore = await keepProductionTrail();
    await detects(
      () => prodQuery("DELETE FROM airlock.audit_log; DELETE FROM airlock.audit_head").then(() => undefined),
      /staging entry \d+ \(promote p-[^)]*\) records production entry \d+, which airlock\.audit_log of production@127\.0\.0\.1:\d+ is missing: production entries were deleted/,
      restore,
    );
  });

  it("dropping the production audit tables", async () => {
    await detects(
      () => prodQuery(DROP_AUDIT_TABLES).then(() => undefined),
      /records production entry \d+ in production@127\.0\.0\.1:\d+, which has no airlock\.audit_log: production's trail was dropped, or the airlock schema renamed/,
      () => prodQuery(RESTORE_AUDIT_TABLES).then(() => undefined),
    );
  });

  it("renaming the airlock schema", async () => {
    await detects(
      () => prodQuery("ALTER SCHEMA airlock RENAME TO airlock_renamed").then(() => undefined),
      /which has no airlock\.audit_log: production's trail was dropped, or the airlock schema renamed/,
      () => prodQuery("ALTER SCHEMA airlock_renamed RENAME TO airlock").then(() => undefined),
    );
  });

  it("attempts without AIRLOCK_SECRET, or under another one, are kept apart as unauthenticated and leave the trail verifiable", async () => {
    // The refusals of the missing- and wrong-secret test above.
    const apart = readUnauthenticated(project);
    expect(apart.map((e) => `${e.action}:${String(e.details.code)}`)).toEqual(
      expect.arrayContaining([
        "approve-refused:AIRLOCK_SECRET_MISSING",
        "promote-refused:AIRLOCK_SECRET_MISSING",
        "approve-refused:AIRLOCK_SECRET_MISMATCH",
        "promote-refused:AIRLOCK_SECRET_MISMATCH",
      ]),
    );
    expect(apart.every((e) => e.reason.length > 0)).toBe(true);
    const r = await verifyCli();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/unauthenticated events, not part of either trail \(\d+\):/);
    expect(existsSync(project.statePath("audit.lock"))).toBe(false);
  });
});
