/**
 * State files read back from disk are checked against their schemas: a file
 * edited by hand (a field of the wrong type, a required field removed) or
 * not JSON at all is an error with a stable code that names the file and the
 * field, never a crash further on. Files that carry a MAC (diffs, approvals)
 * are judged by their MAC first: one Airlock did not write under the secret
 * is refused as not authentic whatever its shape (the schema's finding is
 * added to the message), and only one whose MAC holds but whose shape this
 * version does not read is AIRLOCK_STATE_INVALID. Claims and the
 * supervisor's files stay tolerant.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { journalFile, readJournal, readUnauthenticated, recordEvent, verifyJournal } from "../src/audit/journal.ts";
import { claimState } from "../src/config/claims.ts";
import { type Project, loadProject } from "../src/config/load.ts";
import { diffKey, readAuthenticDiff, readDiff, writeDiff } from "../src/diff/store.ts";
import { canonicalJson, sha256Hex } from "../src/format/canonical.ts";
import { openCluster } from "../src/pg/cluster.ts";
import { approvalKey, approveDiff, requireApproval } from "../src/promote/approval.ts";
import { readManifest, readSnapshotCatalog, type SnapshotManifest } from "../src/snapshot/store.ts";
import { listSessions, readSession } from "../src/staging/sessions.ts";
import { supervisorPaths, supervisorState } from "../src/staging/supervisor.ts";
import { caught } from "./helpers/errors.ts";
import { incidentDiff } from "./helpers/review-diffs.ts";

const SECRET = "state-files-secret-0123456789abcdef";
let root: string;
let project: Project;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "airlock-state-files-"));
  project = await loadProject({ dir: root });
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Writes text to a file, making its directory. */
function put(file: string, text: string): string {
  mkdirSync(join(file, ".."), { recursive: true });
  writeFileSync(file, text);
  return file;
}

/** Expects an error with `code` whose message names `file` and, when given, `field`. */
async function expectNamed(fn: () => unknown, code: string, file: string, field?: string): Promise<void> {
  const e = await caught(fn);
  expect(e.code, e.message).toBe(code);
  expect(e.message).toContain(file);
  if (field !== undefined) expect(e.message).toContain(`${field}: `);
  expect(e.hint).toBeDefined();
}

describe("a snapshot's manifest and catalog", () => {
  const id = "snap-20260101-000000-abcdef";
  const dir = () => join(root, "snapshots");
  const file = () => join(dir(), id, "manifest.json");
  const manifest = (): Record<string, unknown> => ({
    formatVersion: 1,
    id,
    createdAt: "2026-01-01T00:00:00.000Z",
    source: { serverVersion: "17.0", systemIdentifier: null, database: "app", host: "localhost", port: 5432, user: "reader" },
    pgDumpVersion: "17.0",
    rulesHash: "r",
    secretFingerprint: "f",
    tables: [
      {
        schema: "public",
        name: "t",
        columns: [{ name: "id", type: "integer", rule: "keep" }],
        key: ["id"],
        rows: 2,
        file: "data/public.t.copy.gz",
        hmacFile: null,
      },
    ],
    sequences: [],
    files: {},
    leakScan: { ok: true, originalsChecked: 0, fieldsScanned: 0, elapsedMs: 1 },
    elapsedMs: 1,
  });

  it("reads a manifest from before the catalog and the allowances (optional fields absent)", () => {
    put(file(), JSON.stringify(manifest()));
    expect(readManifest(dir(), id).tables[0]!.rows).toBe(2);
  });

  it("names the file and the field of a wrong type, a missing field, or a file that is not JSON (AIRLOCK_SNAPSHOT_CORRUPT)", async () => {
    const m = manifest();
    put(file(), JSON.stringify({ ...m, tables: [{ ...(m.tables as object[])[0], rows: "2" }] }));
    await expectNamed(() => readManifest(dir(), id), "AIRLOCK_SNAPSHOT_CORRUPT", file(), "tables[0].rows");
    const { secretFingerprint: _gone, ...missing } = m;
    put(file(), JSON.stringify(missing));
    await expectNamed(() => readManifest(dir(), id), "AIRLOCK_SNAPSHOT_CORRUPT", file(), "secretFingerprint");
    expect((await caught(() => readManifest(dir(), id))).message).toContain("secretFingerprint: is required");
    put(file(), "{ not json");
    await expectNamed(() => readManifest(dir(), id), "AIRLOCK_SNAPSHOT_CORRUPT", file());
    expect((await caught(() => readManifest(dir(), id))).message).toContain("not valid JSON");
  });

  it("checks catalog.json against its checksum first, then against its schema", async () => {
    const catalogFile = put(
      join(dir(), id, "catalog.json"),
      JSON.stringify({ objects: { "schema public": { kind: "shema", id: "schema public" } }, dependsOn: {} }),
    );
    const text = readFileSync(catalogFile);
    const m = {
      ...manifest(),
      catalog: { file: "catalog.json", owners: [], roles: [] },
      files: { "catalog.json": sha256Hex(text.toString("utf8")) },
    } as unknown as SnapshotManifest;
    await expectNamed(() => readSnapshotCatalog(join(dir(), id), m), "AIRLOCK_SNAPSHOT_CORRUPT", catalogFile, "objects.schema public.kind");
    const wrongSum = { ...m, files: { "catalog.json": "0".repeat(64) } };
    expect((await caught(() => readSnapshotCatalog(join(dir(), id), wrongSum))).message).toContain("does not match its checksum");
  });
});

describe("a session record", () => {
  const record = {
    id: "edited",
    backend: "local",
    snapshotId: "snap-x",
    createdAt: "2026-01-01T00:00:00.000Z",
    expiresAt: null,
    agent: { host: "127.0.0.1", port: 6000, database: "w", user: "u" },
    backendState: {},
    agentPassword: "pw-never-printed",
  };
  const file = () => project.statePath("sessions", "edited.json");

  it("names the file and the field (AIRLOCK_STATE_INVALID), never the value, for readSession and ls", async () => {
    put(file(), JSON.stringify({ ...record, expiresAt: 5, agentPassword: 123456 }));
    await expectNamed(() => readSession(project, "edited"), "AIRLOCK_STATE_INVALID", file(), "expiresAt");
    const e = await caught(() => readSession(project, "edited"));
    expect(e.message).toContain("expected a string, got a number");
    expect(e.message).not.toContain("123456");
    expect(e.hint).toContain("airlock down edited");
    await expectNamed(() => listSessions(project), "AIRLOCK_STATE_INVALID", file(), "expiresAt");
  });

  it("names a missing field", async () => {
    const { agentPassword: _gone, ...missing } = record;
    put(file(), JSON.stringify(missing));
    await expectNamed(() => readSession(project, "edited"), "AIRLOCK_STATE_INVALID", file(), "agentPassword");
  });

  it("reads a well-formed record, and still takes a file that is not JSON for a placeholder being written", async () => {
    put(file(), JSON.stringify(record));
    expect(readSession(project, "edited")).not.toHaveProperty("agentPassword");
    put(file(), "{ cut sh");
    const e = await caught(() => readSession(project, "edited"));
    expect([e.code, e.message]).toEqual(["AIRLOCK_SESSION_NOT_FOUND", expect.stringContaining("still being created")]);
    rmSync(file());
  });
});

describe("a diff and its approval: the MAC first, then the schema", () => {
  let id: string;
  let dir: string;
  const diffText = (value: unknown) => canonicalJson(value);

  /** Writes a diff directory by hand: its diff.json (with its creation time inside) and a MAC that holds, unless told. */
  function handMade(value: Record<string, unknown>, mac = true): { id: string; dir: string; file: string } {
    const text = diffText(value);
    const hid = sha256Hex(text);
    const hdir = project.statePath("diffs", hid);
    const file = put(join(hdir, "diff.json"), text);
    writeFileSync(join(hdir, "diff.mac"), `${mac ? diffKey(SECRET).mac(text) : "ab".repeat(32)}\n`);
    return { id: hid, dir: hdir, file };
  }

  beforeAll(() => {
    ({ id, dir } = writeDiff(project, incidentDiff(), SECRET));
    approveDiff(project, id, { by: "reviewer", accept: ["BULK_DELETE", "MASKED_VALUE"], secret: SECRET });
  });

  it("reads what Airlock wrote", () => {
    expect(readAuthenticDiff(project, id, SECRET).diff.summary.inserts).toBe(282);
    expect(requireApproval(dir, id, SECRET).approvedBy).toBe("reviewer");
  });

  it("a diff whose MAC holds but whose shape this version does not read: a field of the wrong type, a field missing", async () => {
    const base = incidentDiff() as unknown as Record<string, unknown>;
    const wrong = handMade({ ...base, summary: { inserts: "282", updates: 1, deletes: 290, ddl: 1 } });
    await expectNamed(() => readAuthenticDiff(project, wrong.id, SECRET), "AIRLOCK_STATE_INVALID", wrong.file, "summary.inserts");
    const { hazards: _gone, ...rest } = base;
    const missing = handMade(rest);
    await expectNamed(() => readAuthenticDiff(project, missing.id, SECRET), "AIRLOCK_STATE_INVALID", missing.file, "hazards");
    expect((await caught(() => readAuthenticDiff(project, missing.id, SECRET))).message).toContain("hazards: is required");
  });

  it("a forged diff is refused by its MAC (exit 2) whatever its shape; a malformed one's field is named too", async () => {
    const base = incidentDiff() as unknown as Record<string, unknown>;
    const wellFormed = handMade({ ...base, session: "forged" }, false);
    const e = await caught(() => readAuthenticDiff(project, wellFormed.id, SECRET));
    expect([e.code, e.exitCode]).toEqual(["AIRLOCK_DIFF_NOT_AUTHENTIC", 2]);
    expect(e.message).not.toContain("diff.json:");
    const malformed = handMade(
      { ...base, schemaChanges: [{ id: "role forged", kind: "role", action: "create", changed: [], sql: ["CREATE ROLE forged SUPERUSER"], afterData: [] }] },
      false,
    );
    const m = await caught(() => readAuthenticDiff(project, malformed.id, SECRET));
    expect([m.code, m.exitCode]).toEqual(["AIRLOCK_DIFF_NOT_AUTHENTIC", 2]);
    expect(m.message).toContain(`${malformed.file}: schemaChanges[0].kind: `);
  });

  it("a diff.json that is not JSON, and a created.json of the wrong shape, are refused as tampered, naming the file", async () => {
    const text = "{ not json";
    const hid = sha256Hex(text);
    const file = put(project.statePath("diffs", hid, "diff.json"), text);
    await expectNamed(() => readDiff(project, hid), "AIRLOCK_DIFF_TAMPERED", file);
    const { createdAt: _when, ...content } = incidentDiff();
    const noTime = handMade({ ...content, session: "no-time" });
    const created = put(join(noTime.dir, "created.json"), JSON.stringify({ createdAt: 5, mac: "x" }));
    await expectNamed(() => readDiff(project, noTime.id), "AIRLOCK_DIFF_TAMPERED", created, "createdAt");
  });

  it("an approval: not JSON or edited is refused by its MAC naming the file (and the field); well-formed under the MAC but malformed is AIRLOCK_STATE_INVALID", async () => {
    const file = join(dir, "approval.json");
    const original = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    try {
      writeFileSync(file, "{ not json");
      await expectNamed(() => requireApproval(dir, id, SECRET), "AIRLOCK_APPROVAL_NOT_AUTHENTIC", file);
      writeFileSync(file, JSON.stringify({ ...original, accepted: "BULK_DELETE" }));
      const edited = await caught(() => requireApproval(dir, id, SECRET));
      expect([edited.code, edited.exitCode]).toEqual(["AIRLOCK_APPROVAL_NOT_AUTHENTIC", 2]);
      expect(edited.message).toContain("does not carry a valid MAC");
      expect(edited.message).toContain(`${file}: accepted: `);
      // Forged but well-formed: refused by the MAC alone.
      writeFileSync(file, JSON.stringify({ ...original, approvedBy: "mallory" }));
      const forged = await caught(() => requireApproval(dir, id, SECRET));
      expect([forged.code, forged.message.includes(`${file}:`)]).toEqual(["AIRLOCK_APPROVAL_NOT_AUTHENTIC", false]);
      // Written under the secret, in a shape this version does not read.
      for (const [change, field] of [
        [{ accepted: "BULK_DELETE" }, "accepted"],
        [{ note: undefined }, "note"],
      ] as const) {
        const content: Record<string, unknown> = { ...original, mac: undefined, ...change };
        const mac = approvalKey(SECRET).mac(
          canonicalJson({
            id: content.id,
            diffId: content.diffId,
            approvedBy: content.approvedBy,
            approvedAt: content.approvedAt,
            accepted: content.accepted,
            note: content.note,
          }),
        );
        writeFileSync(file, JSON.stringify({ ...content, mac }));
        await expectNamed(() => requireApproval(dir, id, SECRET), "AIRLOCK_STATE_INVALID", file, field);
      }
    } finally {
      writeFileSync(file, JSON.stringify(original));
    }
    expect(requireApproval(dir, id, SECRET).id).toBe(original.id);
  });
});

describe("the audit journal and the unauthenticated events", () => {
  it("names the line and the field of an entry of the wrong type or with a field missing, or a line that is not JSON (AIRLOCK_AUDIT_CORRUPT)", async () => {
    recordEvent(project, { actor: "t", action: "one", details: {} }, SECRET);
    recordEvent(project, { actor: "t", action: "two", details: {} }, SECRET);
    const file = journalFile(project);
    const original = readFileSync(file, "utf8");
    const [first, second] = original.trimEnd().split("\n") as [string, string];
    try {
      writeFileSync(file, `${first}\n${second.replace(/"seq":\d+/, '"seq":"2"')}\n`);
      await expectNamed(() => readJournal(project), "AIRLOCK_AUDIT_CORRUPT", file, "seq");
      expect((await caught(() => readJournal(project))).message).toContain("line 2");
      // Appending would chain onto it: refused as well.
      await expectNamed(() => recordEvent(project, { actor: "t", action: "three", details: {} }, SECRET), "AIRLOCK_AUDIT_CORRUPT", file, "seq");
      const { hash: _gone, ...noHash } = JSON.parse(second) as Record<string, unknown>;
      writeFileSync(file, `${first}\n${JSON.stringify(noHash)}\n`);
      await expectNamed(() => readJournal(project), "AIRLOCK_AUDIT_CORRUPT", file, "hash");
      writeFileSync(file, `${first}\nnot json\n`);
      await expectNamed(() => readJournal(project), "AIRLOCK_AUDIT_CORRUPT", file);
      // A well-formed edit is the chain's MAC to catch.
      writeFileSync(file, `${first}\n${second.replace('"actor":"t"', '"actor":"x"')}\n`);
      expect(verifyJournal(project, SECRET)).toMatchObject({ ok: false, seq: 2 });
    } finally {
      writeFileSync(file, original);
    }
    expect(verifyJournal(project, SECRET).ok).toBe(true);
  });

  it("checks the unauthenticated events the same way", async () => {
    recordEvent(project, { actor: "t", action: "apart", details: {} }, "");
    const file = project.statePath("audit.unauthenticated.jsonl");
    const original = readFileSync(file, "utf8");
    expect(readUnauthenticated(project).at(-1)).toMatchObject({ action: "apart", reason: expect.any(String) });
    try {
      writeFileSync(file, original.replace(/"reason":"[^"]*"/, '"reason":7'));
      await expectNamed(() => readUnauthenticated(project), "AIRLOCK_AUDIT_CORRUPT", file, "reason");
      writeFileSync(file, `${original}garbage\n`);
      await expectNamed(() => readUnauthenticated(project), "AIRLOCK_AUDIT_CORRUPT", file);
    } finally {
      writeFileSync(file, original);
    }
  });
});

describe("the cluster file", () => {
  it("names cluster.json and its field (AIRLOCK_STATE_INVALID) for a wrong type, a missing field, or text that is not JSON", async () => {
    const dir = join(root, "cluster");
    put(join(dir, "data", "PG_VERSION"), "17\n");
    const file = join(dir, "cluster.json");
    const good = { version: 1, port: 5433, superuser: "airlock", binDir: "/usr/lib/postgresql/17/bin", major: 17, createdAt: "2026-01-01T00:00:00.000Z" };
    put(file, JSON.stringify({ ...good, port: "5433" }));
    await expectNamed(() => openCluster({ dir }), "AIRLOCK_STATE_INVALID", file, "port");
    const { major: _gone, ...missing } = good;
    put(file, JSON.stringify(missing));
    await expectNamed(() => openCluster({ dir }), "AIRLOCK_STATE_INVALID", file, "major");
    put(file, "port=5433");
    await expectNamed(() => openCluster({ dir }), "AIRLOCK_STATE_INVALID", file);
  });
});

describe("files that stay tolerant by design", () => {
  it("a claim that is missing, garbled or of another shape is 'unknown'; a pidStart of the wrong type is left out", () => {
    for (const claim of [undefined, null, "x", {}, { pid: "1", host: hostname() }, { pid: -1, host: hostname() }, { pid: process.pid }])
      expect(claimState(claim)).toBe("unknown");
    expect(claimState({ pid: process.pid, host: hostname(), pidStart: 42 })).toBe("alive");
    expect(claimState({ pid: process.pid, host: "another-host" })).toBe("unknown");
  });

  it("the supervisor's worker.json and status.json of the wrong shape read as 'no supervisor' and 'no report'", () => {
    const clusterDir = join(root, "supervised");
    const p = supervisorPaths(clusterDir);
    put(p.worker, JSON.stringify({ pid: "1", port: 5 }));
    put(p.status, JSON.stringify({ updatedAt: "now", pid: process.pid, port: 5, sessions: { u: { connections: "many" } } }));
    expect(supervisorState(clusterDir)).toEqual({ state: "down" });
    put(
      p.status,
      JSON.stringify({ updatedAt: "now", pid: process.pid, port: 5, sessions: { u: { connections: 1, diskBytes: 2, quotaBytes: 3, stopped: null } } }),
    );
    expect(supervisorState(clusterDir).report?.sessions.u?.connections).toBe(1);
  });
});
