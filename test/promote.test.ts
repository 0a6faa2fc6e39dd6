/**
 * Approval, promotion, rollback and the audit trail against a real
 * "production" (the demo dataset), a snapshot, sessions and diffs. Each
 * safety invariant of DESIGN.md that ends at production has a test here.
 */
import { spawn } from "node:child_process";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJournal, verifyJournal, journalFile } from "../src/audit/journal.ts";
import { diffSession } from "../src/diff/run-diff.ts";
import { formatUrl, withClient } from "../src/pg/connect.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { readProductionLog, verifyProductionLog } from "../src/promote/production-schema.ts";
import { rollbackPromotion } from "../src/promote/rollback.ts";
import { agentConnection, createSession, destroySession } from "../src/staging/sessions.ts";
import { caught } from "./helpers/errors.ts";
import {
  SECRET,
  BIN,
  prodCluster,
  prod,
  project,
  checksums,
  prodQuery,
  agentDiff,
  promote,
  promoteBlocked,
  startPromoteProduction,
  stopPromoteProduction,
} from "./helpers/promote-production.ts";

beforeAll(startPromoteProduction);
afterAll(stopPromoteProduction);

describe("everything a promotion changed can be rolled back by Airlock itself", () => {
  it("promotes exactly the agent's changes, audits them, and rolls back to the exact prior state", async () => {
    const id = await agentDiff(
      "happy",
      `UPDATE bookings SET status = 'cancelled' WHERE id = 21;
       INSERT INTO gallery_images (id, title, url, category, published) VALUES (901, 'Garden', 'https://example.com/g.jpg', 'garden', true);
       DELETE FROM reviews WHERE id = 3;
       ALTER TABLE gallery_images ADD COLUMN alt_text text;
       CREATE INDEX bookings_status_idx ON bookings (status);`,
    );
    approveDiff(project, id, { by: "reviewer" });
    const before = await checksums();
    let maxConnections = 0;
    let sampling = true;
    const sampler = withClient(prodCluster.cluster.adminTarget("production"), { step: "test-monitor", searchPath: "public" }, async (c) => {
      while (sampling) {
        const r = await c.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'airlock/promote%' OR application_name LIKE 'airlock/rollback%'",
        );
        maxConnections = Math.max(maxConnections, r.rows[0].n as number);
        await new Promise((res) => setTimeout(res, 2));
      }
    });
    let result: Awaited<ReturnType<typeof promote>>;
    try {
      result = await promote(id);
    } catch (e) {
      sampling = false;
      await sampler;
      throw e;
    }
    expect(result.confirmed).toBe(true);
    expect(await prodQuery("SELECT status::text FROM bookings WHERE id = 21")).toEqual([{ status: "cancelled" }]);
    expect(await prodQuery("SELECT title FROM gallery_images WHERE id = 901")).toEqual([{ title: "Garden" }]);
    expect(await prodQuery("SELECT 1 FROM reviews WHERE id = 3")).toEqual([]);
    expect(await prodQuery("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'bookings_status_idx'")).toEqual([{ n: 1 }]);
    // Nothing else changed: every untouched table keeps its checksum.
    const after = await checksums();
    for (const t of ["guests", "payments", "booking_events"]) expect(after[t], t).toBe(before[t]);
    const log = await withClient(prod, { step: "test", searchPath: "public" }, (c) => readProductionLog(c));
    expect(log.entries.map((e) => e.action)).toContain("promote");
    expect(log.entries.find((e) => e.action === "promote")!.details).toMatchObject({ promotion: result.promotionId, diff: id, approvedBy: "reviewer" });
    expect(verifyProductionLog(log, SECRET).ok).toBe(true);

    const rolled = await rollbackPromotion(project, result.promotionId, { to: prod, by: "tester" }).finally(async () => {
      sampling = false;
      await sampler;
    });
    expect(maxConnections).toBe(1);
    expect(rolled.restored).toBeGreaterThanOrEqual(3);
    expect(await checksums()).toEqual(before);
    expect(await prodQuery("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'bookings_status_idx'")).toEqual([{ n: 0 }]);
    expect(
      await prodQuery("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'gallery_images' AND column_name = 'alt_text'"),
    ).toEqual([{ n: 0 }]);
    // Rolling back twice is refused.
    const twice = await caught(rollbackPromotion(project, result.promotionId, { to: prod }));
    expect([twice.code, twice.exitCode]).toEqual(["AIRLOCK_ALREADY_ROLLED_BACK", 2]);
    expect(await checksums()).toEqual(before);
  });

  it("restores a dropped column with its values", async () => {
    const before = await checksums();
    const id = await agentDiff("drop-col", "ALTER TABLE guests DROP COLUMN country;");
    approveDiff(project, id, { by: "reviewer", accept: ["DROP_COLUMN"] });
    const r = await promote(id);
    expect(await prodQuery("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_name = 'guests' AND column_name = 'country'")).toEqual([
      { n: 0 },
    ]);
    await rollbackPromotion(project, r.promotionId, { to: prod });
    expect(await checksums()).toEqual(before);
  });
});

describe("a promotion is atomic", () => {
  it("refuses conflicts with rows production changed, deleted or took since the snapshot, and changes nothing", async () => {
    const id = await agentDiff(
      "conflicts",
      `UPDATE bookings SET status = 'confirmed' WHERE id = 31;
       DELETE FROM booking_events WHERE booking_id = 32; DELETE FROM reviews WHERE booking_id = 32; DELETE FROM payments WHERE booking_id = 32; DELETE FROM bookings WHERE id = 32;
       INSERT INTO gallery_images (id, title, url, category) VALUES (950, 'x', 'https://example.com/x.jpg', 'rooms');`,
    );
    // booking_events has no key: its deletes are the NO_KEY danger.
    approveDiff(project, id, { by: "reviewer", accept: ["NO_KEY"] });
    await prodQuery("UPDATE bookings SET notes = 'changed by a human' WHERE id = 31");
    await prodQuery("DELETE FROM booking_events WHERE booking_id = 32");
    await prodQuery("DELETE FROM reviews WHERE booking_id = 32");
    await prodQuery("DELETE FROM payments WHERE booking_id = 32");
    await prodQuery("DELETE FROM bookings WHERE id = 32");
    await prodQuery("INSERT INTO gallery_images (id, title, url, category) VALUES (950, 'taken', 'https://example.com/t.jpg', 'rooms')");
    const before = await checksums();
    const err = await caught(promote(id));
    expect([err.code, err.exitCode]).toEqual(["AIRLOCK_CONFLICT", 2]);
    const conflicts = err.details!.conflicts as Array<{ table: string; kind: string }>;
    expect(conflicts).toEqual(
      expect.arrayContaining([
        { table: "public.bookings", key: JSON.stringify({ id: "31" }), kind: "changed" },
        { table: "public.bookings", key: JSON.stringify({ id: "32" }), kind: "deleted" },
        { table: "public.gallery_images", key: JSON.stringify({ id: "950" }), kind: "exists" },
      ]),
    );
    expect(err.message).not.toContain("changed by a human");
    expect(await checksums()).toEqual(before);
    const log = await withClient(prod, { step: "test", searchPath: "public" }, (c) => readProductionLog(c));
    expect(log.entries[log.entries.length - 1]!.action).toBe("promote-refused");
  });

  it("with --rekey, lands inserts whose keys production took meanwhile, with foreign keys among them following", async () => {
    const id = await agentDiff(
      "rekey",
      `WITH g AS (INSERT INTO guests (full_name, email, created_at, updated_at) VALUES ('New Guest', 'new.guest@example.net', '2024-07-01', '2024-07-01') RETURNING id)
       INSERT INTO bookings (guest_id, check_in, check_out, amount, created_at, updated_at) SELECT id, '2024-09-01', '2024-09-03', 210.00, '2024-07-01', '2024-07-01' FROM g;`,
    );
    approveDiff(project, id, { by: "reviewer" });
    // Production hands out the same next keys meanwhile.
    await prodQuery("INSERT INTO guests (full_name, email) VALUES ('Walk-in', 'walk.in@example.net')");
    await prodQuery("INSERT INTO bookings (guest_id, check_in, check_out, amount) VALUES ((SELECT max(id) FROM guests), '2024-09-05', '2024-09-06', 90)");
    const refused = await caught(promote(id));
    expect(refused.code).toBe("AIRLOCK_CONFLICT");
    expect((refused.details!.conflicts as Array<{ kind: string }>).every((c) => c.kind === "exists")).toBe(true);
    const r = await promote(id, { rekey: true });
    expect(r.rekeyed).toBe(2);
    expect(r.confirmed).toBe(true);
    const landed = await prodQuery(
      "SELECT g.full_name, b.amount::text FROM bookings b JOIN guests g ON g.id = b.guest_id WHERE g.email = 'new.guest@example.net'",
    );
    expect(landed).toEqual([{ full_name: "New Guest", amount: "210.00" }]);
    await rollbackPromotion(project, r.promotionId, { to: prod });
    expect(await prodQuery("SELECT count(*)::int AS n FROM guests WHERE email = 'new.guest@example.net'")).toEqual([{ n: 0 }]);
  });

  it("leaves production unchanged on a constraint violation and on a lock timeout", async () => {
    const id = await agentDiff(
      "constraint",
      "UPDATE room_rates_absent_guard SET x = 1 WHERE false;".replace(/.*/, "UPDATE bookings SET amount = 5.00 WHERE id = 41;"),
    );
    approveDiff(project, id, { by: "reviewer" });
    await prodQuery("ALTER TABLE bookings ADD CONSTRAINT bookings_amount_min CHECK (amount >= 10) NOT VALID");
    const before = await checksums();
    try {
      const err = await caught(promote(id));
      expect(err.pg?.sqlstate).toBe("23514");
      expect(await checksums()).toEqual(before);
    } finally {
      await prodQuery("ALTER TABLE bookings DROP CONSTRAINT bookings_amount_min");
    }
    // Someone holds the row: the promotion gives up after lock_timeout and changes nothing.
    await withClient(prodCluster.cluster.adminTarget("production"), { step: "test-holder", searchPath: "public" }, async (holder) => {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM bookings WHERE id = 41 FOR UPDATE");
      const err = await caught(promote(id));
      expect(err.code).toBe("AIRLOCK_LOCK_TIMEOUT");
      await holder.query("ROLLBACK");
    });
    expect(await checksums()).toEqual(before);
    const ok = await promote(id);
    expect(ok.confirmed).toBe(true);
    await rollbackPromotion(project, ok.promotionId, { to: prod });
  });

  it("leaves production unchanged when the promotion process is killed mid-way, releases its lock, and a rerun succeeds", async () => {
    // Six updates, then inserts; the review's foreign-key check must lock booking 57 (FOR KEY SHARE), a row the diff does not change.
    const id = await agentDiff(
      "killed",
      `UPDATE bookings SET status = 'no_show' WHERE id BETWEEN 51 AND 56;
       INSERT INTO gallery_images (id, title, url, category) VALUES (960, 'k', 'https://example.com/k.jpg', 'rooms');
       INSERT INTO reviews (id, booking_id, rating) VALUES (9601, 57, 4);`,
    );
    approveDiff(project, id, { by: "reviewer", accept: [] });
    const before = await checksums();
    const url = formatUrl(prodCluster.cluster.tcpTarget("production"), true);
    // Paused from outside: another connection holds booking 57 FOR UPDATE. The promotion begins its transaction, takes its
    // advisory lock, locks and checks the rows it changes (51..56), pauses the tables' triggers, applies the updates, and
    // then waits at the review's insert. Its own config gives it a lock timeout long enough to be killed while it waits.
    const killConfig = join(project.dir, "airlock.kill-test.config.ts");
    writeFileSync(killConfig, `export default { promote: { lockTimeout: "60s", statementTimeout: "60s" } };\n`);
    const admin = prodCluster.cluster.adminTarget("production");
    try {
      await withClient(admin, { step: "test-holder", searchPath: "public" }, async (holder) => {
        await holder.query("BEGIN");
        await holder.query("SELECT 1 FROM bookings WHERE id = 57 FOR UPDATE");
        const child = spawn(process.execPath, [BIN, "--config", killConfig, "promote", id, "--to", url], {
          cwd: project.dir,
          env: { ...process.env, AIRLOCK_SECRET: SECRET },
          stdio: ["ignore", "pipe", "pipe"],
        });
        let output = "";
        child.stdout.on("data", (d: Buffer) => (output += d.toString()));
        child.stderr.on("data", (d: Buffer) => (output += d.toString()));
        const closed = new Promise<NodeJS.Signals | null>((res) => child.on("close", (_code, signal) => res(signal)));
        const blocked = await promoteBlocked(child, () => output);
        // Blocked inside its transaction, holding its advisory lock, at the review's insert: the updates before it ran.
        expect(blocked).toMatchObject({ state: "active", in_transaction: true, advisory_lock: true });
        expect(blocked.query).toMatch(/^INSERT INTO "?public"?\."?reviews"? /);
        // Now the process dies, then the holder lets go.
        child.kill("SIGKILL");
        expect(await closed).toBe("SIGKILL");
        await holder.query("ROLLBACK");
      });
    } finally {
      rmSync(killConfig, { force: true });
    }
    for (let i = 0; i < 100; i++) {
      const left = await prodQuery("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'airlock/promote'");
      if (left[0]!.n === 0) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(await prodQuery("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'airlock/promote'")).toEqual([{ n: 0 }]);
    expect(await checksums()).toEqual(before);
    expect(await prodQuery("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")).toEqual([{ n: 0 }]);
    const rerun = await promote(id);
    expect(rerun.confirmed).toBe(true);
    await rollbackPromotion(project, rerun.promotionId, { to: prod });
    expect(await checksums()).toEqual(before);
  });
});

describe("a promotion applies exactly the reviewed diff, and a danger hazard is never promoted without being accepted by name", () => {
  it("refuses an unapproved diff, an approval for another sha256, a tampered diff and an unaccepted danger", async () => {
    const before = await checksums();
    const a = await agentDiff("refuse-a", "UPDATE bookings SET status = 'confirmed' WHERE id = 61;");
    const b = await agentDiff("refuse-b", "UPDATE bookings SET status = 'confirmed' WHERE id = 62;");
    expect((await caught(promote(a))).code).toBe("AIRLOCK_NOT_APPROVED");
    approveDiff(project, b, { by: "reviewer" });
    // An approval copied from another diff binds that diff's sha256, not this one's.
    copyFileSync(join(project.statePath("diffs", b), "approval.json"), join(project.statePath("diffs", a), "approval.json"));
    const mismatch = await caught(promote(a));
    expect([mismatch.code, mismatch.exitCode]).toEqual(["AIRLOCK_APPROVAL_MISMATCH", 2]);
    const file = join(project.statePath("diffs", b), "diff.json");
    writeFileSync(file, readFileSync(file, "utf8").replace('"confirmed"', '"cancelled"'));
    const tampered = await caught(promote(b));
    expect([tampered.code, tampered.exitCode]).toEqual(["AIRLOCK_DIFF_TAMPERED", 2]);

    const bulk = await agentDiff("refuse-bulk", "DELETE FROM gallery_images WHERE id >= 439;");
    const refused = await caught(() => approveDiff(project, bulk, { by: "reviewer" }));
    expect([refused.code, refused.exitCode]).toEqual(["AIRLOCK_HAZARD_NOT_ACCEPTED", 2]);
    expect(refused.hint).toContain("--accept BULK_DELETE");
    expect((await caught(promote(bulk))).code).toBe("AIRLOCK_NOT_APPROVED");
    expect(await checksums()).toEqual(before);
  });

  it("refuses to approve an unverified diff, and approve needs a typed confirmation off a terminal", async () => {
    const s = await createSession(project, { name: "unverified" });
    // An enum value added and used: the replay adds and uses it in one transaction, which Postgres refuses.
    await withClient(agentConnection(project, s.id).target, { step: "test-agent", searchPath: "public" }, async (c) => {
      await c.query("ALTER TYPE booking_status ADD VALUE 'archived'");
      await c.query("UPDATE bookings SET status = 'archived' WHERE id = (SELECT min(id) FROM bookings)");
    });
    const r = await diffSession(project, s.id);
    await destroySession(project, s.id);
    expect(r.diff.verification.verified).toBe(false);
    expect((await caught(() => approveDiff(project, r.id, { by: "reviewer" }))).code).toBe("AIRLOCK_DIFF_UNVERIFIED");
    const cli = await new Promise<{ code: number | null; err: string }>((res) => {
      const p = spawn(process.execPath, [BIN, "approve", r.id.slice(0, 12), "--by", "x"], { cwd: project.dir, stdio: ["ignore", "pipe", "pipe"] });
      let err = "";
      p.stderr.on("data", (d: Buffer) => (err += d.toString()));
      p.on("close", (code) => res({ code, err }));
    });
    expect(cli.code).toBe(2);
    expect(cli.err).toContain("AIRLOCK_CONFIRMATION_REQUIRED");
  });
});

describe("every step is in the audit trail, and tampering with the trail is detected", () => {
  it("detects an edited, deleted or reordered entry in .airlock/audit.jsonl", () => {
    const entries = readJournal(project);
    expect(entries.map((e) => e.action)).toEqual(expect.arrayContaining(["up", "diff", "approve", "down", "promote", "rollback"]));
    expect(verifyJournal(project).ok).toBe(true);
    const file = journalFile(project);
    const original = readFileSync(file, "utf8");
    const lines = original.trimEnd().split("\n");
    try {
      writeFileSync(file, `${lines.map((l, i) => (i === 2 ? l.replace('"actor":"', '"actor":"x') : l)).join("\n")}\n`);
      expect(verifyJournal(project)).toMatchObject({ ok: false, seq: 3 });
      writeFileSync(file, `${lines.filter((_, i) => i !== 1).join("\n")}\n`);
      expect(verifyJournal(project).ok).toBe(false);
      writeFileSync(file, `${[lines[1], lines[0], ...lines.slice(2)].join("\n")}\n`);
      expect(verifyJournal(project).ok).toBe(false);
      writeFileSync(file, `${lines.slice(0, -1).join("\n")}\n`);
      expect(verifyJournal(project).ok).toBe(false);
    } finally {
      writeFileSync(file, original);
    }
    expect(verifyJournal(project).ok).toBe(true);
  });

  it("detects an edited, deleted or reordered row in airlock.audit_log", async () => {
    const read = () => withClient(prod, { step: "test", searchPath: "public" }, (c) => readProductionLog(c));
    expect(verifyProductionLog(await read(), SECRET)).toEqual({ ok: true, entries: expect.any(Number) });
    const tamper = async (sql: string, undo: string) => {
      await prodQuery(sql);
      const check = verifyProductionLog(await read(), SECRET);
      await prodQuery(undo);
      return check.ok;
    };
    expect(
      await tamper(
        "UPDATE airlock.audit_log SET actor = 'mallory' WHERE seq = 2",
        "UPDATE airlock.audit_log SET actor = (SELECT actor FROM airlock.audit_log WHERE seq = 1) WHERE seq = 2",
      ),
    ).toBe(false);
    const row = (await prodQuery("SELECT * FROM airlock.audit_log WHERE seq = 1"))[0]!;
    expect(await tamper("DELETE FROM airlock.audit_log WHERE seq = 1", "SELECT 1")).toBe(false);
    await prodQuery("INSERT INTO airlock.audit_log SELECT * FROM jsonb_populate_record(NULL::airlock.audit_log, $1::jsonb)", [JSON.stringify(row)]);
    expect(
      await tamper(
        "UPDATE airlock.audit_log SET seq = -seq WHERE seq IN (1, 2); UPDATE airlock.audit_log SET seq = 2 WHERE seq = -1; UPDATE airlock.audit_log SET seq = 1 WHERE seq = -2",
        "UPDATE airlock.audit_log SET seq = -seq WHERE seq IN (1, 2); UPDATE airlock.audit_log SET seq = 2 WHERE seq = -1; UPDATE airlock.audit_log SET seq = 1 WHERE seq = -2",
      ),
    ).toBe(false);
    const last = (await prodQuery("SELECT max(seq)::int AS m FROM airlock.audit_log"))[0]!.m as number;
    const lastRow = (await prodQuery("SELECT * FROM airlock.audit_log WHERE seq = $1", [last]))[0]!;
    expect(await tamper(`DELETE FROM airlock.audit_log WHERE seq = ${last}`, "SELECT 1")).toBe(false);
    await prodQuery("INSERT INTO airlock.audit_log SELECT * FROM jsonb_populate_record(NULL::airlock.audit_log, $1::jsonb)", [JSON.stringify(lastRow)]);
    expect(verifyProductionLog(await read(), SECRET).ok).toBe(true);
  });
});
