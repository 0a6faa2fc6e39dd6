/**
 * Sequences, whatever their shape, through promotion, --rekey and rollback.
 * Production has a key fed by an owned serial, one by an identity column,
 * one by a plain `nextval` default on a sequence with no OWNED BY in a
 * second schema (shared by two tables there), children with foreign keys to
 * two of them, and a descending sequence feeding a column that is not a key.
 * The bug this file is named after: with `pg_get_serial_sequence` only the
 * first two were advanced, so production's next plain INSERT after a
 * promotion failed with a duplicate key, `--rekey` skipped the rest, and a
 * rollback left an agent's `setval` (900001) in production.
 *
 * Each test gets its own production database and snapshot, so none depends
 * on where another left the sequences.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/config.ts";
import type { Project } from "../src/config/load.ts";
import { diffSession } from "../src/diff/run-diff.ts";
import { type PgTarget, makeTarget, quoteIdent, withClient } from "../src/pg/connect.ts";
import { approveDiff } from "../src/promote/approval.ts";
import { promoteDiff } from "../src/promote/promote.ts";
import { rollbackPromotion } from "../src/promote/rollback.ts";
import { agentConnection, createSession, destroySession } from "../src/staging/sessions.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";
import { caught } from "./helpers/errors.ts";
import { captureInto, createTestProject, removeTestProject } from "./helpers/project.ts";

const SECRET = "sequences-test-secret-0123456789abcdef";
// Diff, approval and rollback read the secret from the environment as the CLI does (this file runs in its own process).
process.env.AIRLOCK_SECRET = SECRET;

let prodCluster: TestCluster;
let project: Project;

const PRODUCTION = `
  CREATE TABLE public.widgets (id serial PRIMARY KEY, label text NOT NULL);
  CREATE TABLE public.widget_parts (id serial PRIMARY KEY, widget_id integer NOT NULL REFERENCES public.widgets, label text NOT NULL);
  CREATE TABLE public.gadgets (id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text NOT NULL);
  CREATE SCHEMA billing;
  -- No OWNED BY: only the column defaults tie these sequences to their tables.
  CREATE SEQUENCE billing.doc_numbers;
  CREATE SEQUENCE billing.invoice_refs INCREMENT BY -1;
  CREATE TABLE billing.invoices (id bigint PRIMARY KEY DEFAULT nextval('billing.doc_numbers'), ref bigint NOT NULL DEFAULT nextval('billing.invoice_refs'), label text NOT NULL);
  CREATE TABLE billing.invoice_lines (id bigint PRIMARY KEY DEFAULT nextval('billing.doc_numbers'), invoice_id bigint NOT NULL REFERENCES billing.invoices, qty integer NOT NULL);
  INSERT INTO public.widgets (label) SELECT 'w' || g FROM generate_series(1, 3) g;
  INSERT INTO public.widget_parts (widget_id, label) SELECT id, 'p' || id FROM public.widgets;
  INSERT INTO public.gadgets (label) SELECT 'g' || g FROM generate_series(1, 3) g;
  INSERT INTO billing.invoices (label) SELECT 'i' || g FROM generate_series(1, 3) g;
  INSERT INTO billing.invoice_lines (invoice_id, qty) SELECT id, 1 FROM billing.invoices;
`;

const SEQUENCES = ["public.widgets_id_seq", "public.widget_parts_id_seq", "public.gadgets_id_seq", "billing.doc_numbers", "billing.invoice_refs"];

/** A parent with a child in each family, and a gadget: every kind of sequence feeds a promoted row. */
const AGENT_SQL = `
  WITH w AS (INSERT INTO widgets (label) VALUES ('agent widget') RETURNING id)
    INSERT INTO widget_parts (widget_id, label) SELECT id, 'agent part' FROM w;
  INSERT INTO gadgets (label) VALUES ('agent gadget');
  WITH i AS (INSERT INTO billing.invoices (label) VALUES ('agent invoice') RETURNING id)
    INSERT INTO billing.invoice_lines (invoice_id, qty) SELECT id, 7 FROM i;
`;

/** The app's plain inserts, every value from a default. */
const APP_INSERTS = `
  WITH w AS (INSERT INTO widgets (label) VALUES ('walk-in widget') RETURNING id)
    INSERT INTO widget_parts (widget_id, label) SELECT id, 'walk-in part' FROM w;
  INSERT INTO gadgets (label) VALUES ('walk-in gadget');
  WITH i AS (INSERT INTO billing.invoices (label) VALUES ('walk-in invoice') RETURNING id)
    INSERT INTO billing.invoice_lines (invoice_id, qty) SELECT id, 1 FROM i;
`;

interface Production {
  readonly target: PgTarget;
  readonly snapshot: string;
}

async function sql(target: PgTarget, text: string, values: unknown[] = []): Promise<Record<string, unknown>[]> {
  return withClient(target, { step: "test", searchPath: "public" }, async (c) => (await c.query(text, values)).rows);
}

/** A fresh production database with the schema above and a snapshot of it. */
async function production(name: string): Promise<Production> {
  const target = await prodCluster.createDatabase(name);
  await withClient(target, { step: "test", searchPath: "public" }, (c) => c.query(PRODUCTION));
  const rules = parseConfig({ masking: { rules: {} } }).masking.rules;
  const manifest = await captureInto(project, target, SECRET, rules);
  return { target, snapshot: manifest.id };
}

/** A session on the snapshot where the agent runs `agentSql`, diffed and approved; returns the diff id. */
async function approvedDiff(p: Production, name: string, agentSql: string): Promise<string> {
  const s = await createSession(project, { name, snapshotId: p.snapshot });
  await withClient(agentConnection(project, s.id).target, { step: "test-agent", searchPath: "public" }, (c) => c.query(agentSql));
  const r = await diffSession(project, s.id);
  await destroySession(project, s.id);
  expect(r.diff.verification.verified).toBe(true);
  approveDiff(project, r.id, { by: "reviewer" });
  return r.id;
}

type States = Record<string, { last_value: string; is_called: boolean }>;

async function sequenceStates(target: PgTarget): Promise<States> {
  const out: States = {};
  for (const s of SEQUENCES) out[s] = (await sql(target, `SELECT last_value::text, is_called FROM ${s}`))[0] as States[string];
  return out;
}

async function outcomes(target: PgTarget, promotionId: string): Promise<Record<string, string | null>> {
  const rows = await sql(target, "SELECT seq_schema || '.' || seq_name AS s, outcome FROM airlock.promotion_sequences WHERE promotion_id = $1", [promotionId]);
  return Object.fromEntries(rows.map((r) => [r.s as string, r.outcome as string | null]));
}

const promote = (p: Production, id: string, extra: { rekey?: boolean; dryRun?: boolean } = {}) =>
  promoteDiff(project, id, { to: p.target, secret: SECRET, by: "tester", ...extra });
const rollback = (p: Production, promotionId: string) => rollbackPromotion(project, promotionId, { to: p.target, by: "tester" });

beforeAll(async () => {
  prodCluster = await startTestCluster("sequences-prod");
  project = await createTestProject("sequences-project", `export default { promote: { lockTimeout: "2s", statementTimeout: "20s" } };\n`);
});

afterAll(async () => {
  await removeTestProject(project);
  await prodCluster?.close();
});

describe("promote followed by rollback leaves production as it was; sequences back where they were when nothing else advanced them", () => {
  it("advances every sequence a promoted row draws from, whatever its shape, so production's next default insert succeeds; rollback leaves what production advanced since", async () => {
    const p = await production("advance");
    const id = await approvedDiff(p, "advance", AGENT_SQL);
    const before = await sequenceStates(p.target);

    // A dry run moves no sequence: its changes roll back with its transaction.
    await promote(p, id, { dryRun: true });
    expect(await sequenceStates(p.target)).toEqual(before);

    const r = await promote(p, id);
    expect(r.confirmed).toBe(true);
    const after = await sequenceStates(p.target);
    // Past the agent's rows: widget 4, part 4, gadget 4, invoice 7 and its line 8 (one shared sequence), ref -4 (descending).
    expect(after).toEqual({
      "public.widgets_id_seq": { last_value: "4", is_called: true },
      "public.widget_parts_id_seq": { last_value: "4", is_called: true },
      "public.gadgets_id_seq": { last_value: "4", is_called: true },
      "billing.doc_numbers": { last_value: "8", is_called: true },
      "billing.invoice_refs": { last_value: "-4", is_called: true },
    });
    const saved = await sql(
      p.target,
      "SELECT seq_schema || '.' || seq_name AS s, before_value::text AS b, after_value::text AS a FROM airlock.promotion_sequences WHERE promotion_id = $1 ORDER BY 1",
      [r.promotionId],
    );
    expect(saved).toEqual([
      { s: "billing.doc_numbers", b: "6", a: "8" },
      { s: "billing.invoice_refs", b: "-3", a: "-4" },
      { s: "public.gadgets_id_seq", b: "3", a: "4" },
      { s: "public.widget_parts_id_seq", b: "3", a: "4" },
      { s: "public.widgets_id_seq", b: "3", a: "4" },
    ]);

    // The application's next plain INSERT into each table succeeds, with values past the promoted ones.
    await sql(p.target, APP_INSERTS);
    expect(await sql(p.target, "SELECT id::int, ref::int FROM billing.invoices WHERE label = 'walk-in invoice'")).toEqual([{ id: 9, ref: -5 }]);
    expect(await sql(p.target, "SELECT id::int FROM gadgets WHERE label = 'walk-in gadget'")).toEqual([{ id: 5 }]);

    // Production advanced every sequence since the promotion: the rollback removes the promoted rows and leaves them, saying so.
    const advanced = await sequenceStates(p.target);
    await rollback(p, r.promotionId);
    expect(await sql(p.target, "SELECT count(*)::int AS n FROM widgets WHERE label = 'agent widget'")).toEqual([{ n: 0 }]);
    expect(await sequenceStates(p.target)).toEqual(advanced);
    expect(await outcomes(p.target, r.promotionId)).toEqual(Object.fromEntries(SEQUENCES.map((s) => [s, "left-advanced"])));
    await sql(p.target, APP_INSERTS);
  });

  it("moves every sequence back exactly when nothing else advanced it, the agent's setval included", async () => {
    const p = await production("exact");
    // The agent jumps the serial to 900000 first: its widget is 900001.
    const id = await approvedDiff(p, "exact", `SELECT setval('widgets_id_seq', 900000); ${AGENT_SQL}`);
    const before = await sequenceStates(p.target);
    const r = await promote(p, id);
    expect(r.confirmed).toBe(true);
    expect((await sequenceStates(p.target))["public.widgets_id_seq"]).toEqual({ last_value: "900001", is_called: true });
    await rollback(p, r.promotionId);
    expect(await sequenceStates(p.target)).toEqual(before);
    expect(await outcomes(p.target, r.promotionId)).toEqual(Object.fromEntries(SEQUENCES.map((s) => [s, "restored"])));
    // And production carries on from where it was.
    await sql(p.target, APP_INSERTS);
    expect(await sql(p.target, "SELECT id::int FROM widgets WHERE label = 'walk-in widget'")).toEqual([{ id: 4 }]);
  });

  it("never moves a sequence back below a value production has used since", async () => {
    const p = await production("in-use");
    const id = await approvedDiff(p, "in-use", `SELECT setval('widgets_id_seq', 900000); ${AGENT_SQL}`);
    const before = await sequenceStates(p.target);
    const r = await promote(p, id);
    // A row written since with an explicit key inside the promotion's range, without the sequence.
    await sql(p.target, "INSERT INTO widgets (id, label) VALUES (500000, 'imported')");
    await rollback(p, r.promotionId);
    const now = await sequenceStates(p.target);
    expect(now["public.widgets_id_seq"]).toEqual({ last_value: "500000", is_called: true });
    expect({ ...now, "public.widgets_id_seq": null }).toEqual({ ...before, "public.widgets_id_seq": null });
    expect((await outcomes(p.target, r.promotionId))["public.widgets_id_seq"]).toBe("restored-to-in-use");
    await sql(p.target, APP_INSERTS);
    expect(await sql(p.target, "SELECT id::int FROM widgets WHERE label = 'walk-in widget'")).toEqual([{ id: 500001 }]);
  });

  it("with --rekey, gives inserted rows fresh keys from every kind of sequence, children pointing at their parents' new keys", async () => {
    const p = await production("rekey");
    const id = await approvedDiff(p, "rekey", AGENT_SQL);
    // Production hands out the agent's keys meanwhile: widget 4, part 4, gadget 4, invoice 7, line 8.
    await sql(p.target, APP_INSERTS);
    const refused = await caught(promote(p, id));
    expect(refused.code).toBe("AIRLOCK_CONFLICT");
    expect((refused.details!.conflicts as Array<{ table: string; kind: string }>).map((c) => `${c.table}:${c.kind}`).sort()).toEqual(
      ["billing.invoice_lines", "billing.invoices", "public.gadgets", "public.widget_parts", "public.widgets"].map((t) => `${t}:exists`),
    );
    const before = await sequenceStates(p.target);
    // Rehearsed, the fresh keys are given back.
    const rehearsal = await promote(p, id, { rekey: true, dryRun: true });
    expect(rehearsal.rekeyed).toBe(5);
    expect(await sequenceStates(p.target)).toEqual(before);

    const r = await promote(p, id, { rekey: true });
    expect(r.rekeyed).toBe(5);
    expect(r.confirmed).toBe(true);
    expect(await sql(p.target, "SELECT w.id::int, w.label FROM widget_parts c JOIN widgets w ON w.id = c.widget_id WHERE c.label = 'agent part'")).toEqual([
      { id: 5, label: "agent widget" },
    ]);
    expect(await sql(p.target, "SELECT id::int FROM gadgets WHERE label = 'agent gadget'")).toEqual([{ id: 5 }]);
    expect(
      await sql(
        p.target,
        "SELECT l.id::int AS line, i.id::int AS invoice, i.label FROM billing.invoice_lines l JOIN billing.invoices i ON i.id = l.invoice_id WHERE l.qty = 7",
      ),
    ).toEqual([{ line: 10, invoice: 9, label: "agent invoice" }]);
    // The walk-ins keep theirs.
    expect(await sql(p.target, "SELECT w.id::int FROM widget_parts c JOIN widgets w ON w.id = c.widget_id WHERE c.label = 'walk-in part'")).toEqual([
      { id: 4 },
    ]);

    // Production uses one of them since (a gadget); rollback leaves that one and moves the others back.
    await sql(p.target, "INSERT INTO gadgets (label) VALUES ('later gadget')");
    const gadgets = (await sequenceStates(p.target))["public.gadgets_id_seq"];
    await rollback(p, r.promotionId);
    expect(await sequenceStates(p.target)).toEqual({ ...before, "public.gadgets_id_seq": gadgets });
    expect(await outcomes(p.target, r.promotionId)).toEqual({
      "public.widgets_id_seq": "restored",
      "public.widget_parts_id_seq": "restored",
      "public.gadgets_id_seq": "left-advanced",
      "billing.doc_numbers": "restored",
    });
    expect(await sql(p.target, "SELECT count(*)::int AS n FROM billing.invoices WHERE label = 'agent invoice'")).toEqual([{ n: 0 }]);
    await sql(p.target, APP_INSERTS);
  });

  it("advances a sequence the promoting role may use but does not own, and rollback leaves it there, saying why", async () => {
    const p = await production("not-owner");
    // The promoter owns the tables (and the sequences that go with them) but only has rights on billing.doc_numbers.
    await sql(
      p.target,
      `CREATE ROLE seq_promoter LOGIN; GRANT CREATE ON DATABASE ${quoteIdent(p.target.database)} TO seq_promoter; GRANT USAGE ON SCHEMA billing TO seq_promoter;
       ALTER TABLE widgets OWNER TO seq_promoter; ALTER TABLE widget_parts OWNER TO seq_promoter; ALTER TABLE gadgets OWNER TO seq_promoter;
       ALTER TABLE billing.invoices OWNER TO seq_promoter; ALTER TABLE billing.invoice_lines OWNER TO seq_promoter; ALTER SEQUENCE billing.invoice_refs OWNER TO seq_promoter;
       GRANT SELECT, UPDATE, USAGE ON SEQUENCE billing.doc_numbers TO seq_promoter`,
    );
    const asPromoter: Production = {
      ...p,
      target: makeTarget({ host: p.target.host, port: p.target.port, database: p.target.database, user: "seq_promoter" }),
    };
    try {
      const id = await approvedDiff(p, "not-owner", AGENT_SQL);
      const before = await sequenceStates(p.target);
      const r = await promote(asPromoter, id);
      expect(r.confirmed).toBe(true);
      expect((await sequenceStates(p.target))["billing.doc_numbers"]).toEqual({ last_value: "8", is_called: true });
      await rollback(asPromoter, r.promotionId);
      // Moved back without a lock, a failure later in the rollback could not undo it: left ahead, a gap and never a reused value.
      expect(await sequenceStates(p.target)).toEqual({ ...before, "billing.doc_numbers": { last_value: "8", is_called: true } });
      expect((await outcomes(p.target, r.promotionId))["billing.doc_numbers"]).toBe("left-not-owner");
      await sql(p.target, APP_INSERTS);
    } finally {
      await sql(
        p.target,
        "DROP SCHEMA IF EXISTS airlock CASCADE; REASSIGN OWNED BY seq_promoter TO CURRENT_USER; DROP OWNED BY seq_promoter; DROP ROLE seq_promoter",
      );
    }
  });
});
