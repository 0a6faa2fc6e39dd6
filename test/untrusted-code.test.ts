/**
 * Agent-written code never runs with Airlock's privileges, and triggers don't
 * break verification. The agent owns its work database and may write any
 * code there: functions, triggers, policies, defaults, CHECKs, views,
 * database settings. None of it may run as a superuser while Airlock diffs,
 * replays or promotes; what does run in production runs with the rights of
 * the objects' production owner, or is refused. Triggers production already
 * has must not fire again when a diff is replayed or promoted (the rows they
 * wrote in work are part of the diff), yet stay enabled in production and
 * leave foreign keys enforced.
 *
 * The probe: the Postgres servers run as one OS user; agent code that finds
 * itself running as a superuser writes a file named after the current
 * database into a world-writable directory with COPY TO PROGRAM. No file may
 * ever appear. Code that should run in production under its owner's rights
 * logs who ran it into production's world-writable `public.calls`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffSession } from "../src/diff/run-diff.ts";
import { makeTarget, quoteIdent } from "../src/pg/connect.ts";
import { promoteDiff } from "../src/promote/promote.ts";
import { caught } from "./helpers/errors.ts";
import {
  SECRET,
  prod,
  project,
  markerDir,
  superuserRuns,
  ifSuperuserTouch,
  callLogger,
  asAgent,
  agentRows,
  prodQuery,
  inSession,
  diffWatching,
  expectVerified,
  approveAccepting,
  promote,
  tableChanges,
  callRows,
  callsSince,
  NOTES,
  ACCOUNTS,
  HISTORY,
  startUntrustedProduction,
  stopUntrustedProduction,
} from "./helpers/untrusted-production.ts";

beforeAll(startUntrustedProduction);
afterAll(stopUntrustedProduction);

describe("agent-written code never runs with Airlock's privileges: not while diffing, not while replaying, not while promoting", () => {
  describe("agent code never runs with Airlock's privileges during diff", () => {
    it("a trigger the agent adds fires neither in the diff, the replay nor the promotion, and reaches production only as reviewed DDL", async () => {
      const marker = markerDir("trigger");
      const r = await inSession("trigger-attack", async (id) => {
        await asAgent(
          id,
          `CREATE FUNCTION public.gallery_audit() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             ${ifSuperuserTouch(marker)}
             IF pg_catalog.current_database() NOT LIKE 'airlock\\_%' THEN
               BEGIN
                 CREATE ROLE backdoor LOGIN SUPERUSER PASSWORD 'bd';
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
               UPDATE public.guests SET country = 'PWNED' WHERE id = 1;
             END IF;
             RETURN NULL;
           END $$;
           CREATE TRIGGER gallery_audit AFTER UPDATE ON public.gallery_images FOR EACH ROW EXECUTE FUNCTION public.gallery_audit();
           UPDATE public.gallery_images SET title = 'Retitled by the agent' WHERE id = 439;`,
        );
        return diffWatching(id, marker);
      });
      expectVerified(r);
      expect(r.diff.hazards.map((h) => h.code)).toContain("TRIGGER");
      approveAccepting(r);
      try {
        await promote(r.id);
        expect(superuserRuns(marker), "databases where agent code ran as a superuser").toEqual([]);
        expect(await prodQuery("SELECT rolname FROM pg_roles WHERE rolname = 'backdoor'")).toEqual([]);
        expect(await prodQuery("SELECT id FROM public.guests WHERE country = 'PWNED'")).toEqual([]);
        expect(await prodQuery("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.gallery_images'::regclass AND tgname = 'gallery_audit'")).toEqual([
          { tgname: "gallery_audit" },
        ]);
        expect(await prodQuery("SELECT title FROM public.gallery_images WHERE id = 439")).toEqual([{ title: "Retitled by the agent" }]);
      } finally {
        // The agent's trigger now sits in production: take it out before any later UPDATE of the table fires it.
        await prodQuery("DROP TRIGGER IF EXISTS gallery_audit ON public.gallery_images; DROP ROLE IF EXISTS backdoor");
      }
    });

    it("a search_path the agent sets on its database never resolves Airlock's function calls to agent code", async () => {
      const marker = markerDir("search-path");
      const r = await inSession("search-path", async (id) => {
        await asAgent(id, async (c) => {
          const db = (await c.query("SELECT current_database() AS db")).rows[0].db as string;
          await c.query(
            `CREATE SCHEMA evil;
             CREATE FUNCTION evil.hash_record_extended(record, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
             BEGIN
               ${ifSuperuserTouch(marker)}
               RETURN 0;
             END $$;
             CREATE FUNCTION evil.md5(text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN
               ${ifSuperuserTouch(marker)}
               RETURN pg_catalog.md5($1);
             END $$;
             ALTER DATABASE ${quoteIdent(db)} SET search_path = evil, pg_catalog, public;
             UPDATE public.gallery_images SET title = 'Seen whatever the search_path' WHERE id = 441;`,
          );
        });
        return diffWatching(id, marker);
      });
      // The hijacked checksum (always 0) must not hide the change either.
      const gallery = tableChanges(r, "public.gallery_images");
      expect(gallery?.changes.map((c) => (c.kind === "update" ? { key: c.key, title: c.new.title } : c.kind))).toEqual([
        { key: { id: "441" }, title: "Seen whatever the search_path" },
      ]);
      expectVerified(r);
    });

    it("a database setting that changes how SQL text is read never changes the values the diff records", async () => {
      const value = "O'Brien \\ test";
      const { r, stored } = await inSession("string-settings", async (id) => {
        await asAgent(id, async (c) => {
          const db = (await c.query("SELECT current_database() AS db")).rows[0].db as string;
          await c.query(`ALTER DATABASE ${quoteIdent(db)} SET standard_conforming_strings = off`);
          await c.query("UPDATE public.guests SET full_name = $1 WHERE id = 2", [value]);
        });
        // What work holds, read on a new connection (which has the setting).
        const stored = (await agentRows(id, "SELECT full_name FROM public.guests WHERE id = 2"))[0]!.full_name;
        return { r: await diffSession(project, id), stored };
      });
      expect(stored).toBe(value);
      const guests = tableChanges(r, "public.guests");
      const update = guests?.changes.find((c) => c.kind === "update" && c.key.id === "2");
      expect(update?.kind === "update" ? update.new.full_name : update).toBe(stored);
      expectVerified(r);
    });

    it("a row-level security policy the agent adds never hides rows from the diff nor runs as a superuser", async () => {
      const marker = markerDir("policy");
      const { r, review, rating } = await inSession("policy-spy", async (id) => {
        const [row] = await agentRows(id, "SELECT id, rating FROM public.reviews ORDER BY id LIMIT 1");
        const rating = row!.rating === 1 ? 2 : 1;
        await asAgent(id, (c) => c.query("UPDATE public.reviews SET rating = $1 WHERE id = $2", [rating, row!.id]));
        await asAgent(
          id,
          `CREATE FUNCTION public.spy() RETURNS boolean LANGUAGE plpgsql AS $$
           BEGIN
             ${ifSuperuserTouch(marker)}
             RETURN false;
           END $$;
           ALTER TABLE public.reviews ENABLE ROW LEVEL SECURITY;
           ALTER TABLE public.reviews FORCE ROW LEVEL SECURITY;
           CREATE POLICY p ON public.reviews USING (public.spy());`,
        );
        return { r: await diffWatching(id, marker), review: String(row!.id), rating: String(rating) };
      });
      // Exactly the one update: no rows hidden by the policy show up as deleted.
      const reviews = tableChanges(r, "public.reviews");
      expect(reviews?.changes.map((c) => (c.kind === "update" ? { kind: c.kind, key: c.key, rating: c.new.rating } : { kind: c.kind }))).toEqual([
        { kind: "update", key: { id: review }, rating },
      ]);
      expectVerified(r);
    });
  });

  describe("DDL expressions never run agent code with the promoter's rights", () => {
    it("a column default calling agent code on a table owned by an ordinary role runs as that role in production", async () => {
      const marker = markerDir("default-owned");
      const r = await inSession("default-owned", async (id) => {
        await asAgent(
          id,
          `${callLogger("item_default", marker)}
          ALTER TABLE public.owned_items ADD COLUMN extra int DEFAULT public.item_default();`,
        );
        return diffWatching(id, marker);
      });
      expectVerified(r);
      approveAccepting(r);
      const before = await callRows();
      await promote(r.id);
      expect(superuserRuns(marker), "databases where agent code ran as a superuser").toEqual([]);
      const gained = await callsSince(before);
      expect(
        gained.filter((c) => c.super !== false),
        "calls made as a superuser",
      ).toEqual([]);
      expect(
        gained.filter((c) => c.who !== "app_owner"),
        "calls made as anyone but the table's owner",
      ).toEqual([]);
      expect(await prodQuery("SELECT id, extra FROM public.owned_items ORDER BY id")).toEqual([1, 2, 3].map((id) => ({ id, extra: 1 })));
    });

    it("a column default calling agent code on a superuser-owned table is refused at promotion, and production is unchanged", async () => {
      const marker = markerDir("default-superuser");
      const r = await inSession("default-superuser", async (id) => {
        await asAgent(
          id,
          `${callLogger("gallery_default", marker)}
          ALTER TABLE public.gallery_images ADD COLUMN extra int DEFAULT public.gallery_default();`,
        );
        return diffWatching(id, marker);
      });
      expectVerified(r);
      approveAccepting(r);
      const before = await callRows();
      const err = await caught(promote(r.id));
      expect(err.code).toBe("AIRLOCK_USER_CODE_AS_SUPERUSER");
      expect(
        await prodQuery(
          "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'gallery_images' AND column_name = 'extra'",
        ),
      ).toEqual([]);
      expect(await prodQuery("SELECT proname FROM pg_proc WHERE proname = 'gallery_default'")).toEqual([]);
      expect(await callsSince(before)).toEqual([]);
      expect(superuserRuns(marker), "databases where agent code ran as a superuser").toEqual([]);
    });

    it("a CHECK constraint and a materialized view calling agent code run as their table's and schema's owner in production", async () => {
      const marker = markerDir("check-matview");
      const r = await inSession("check-matview", async (id) => {
        await asAgent(
          id,
          `${callLogger("item_check", marker, { args: "int", returns: "boolean", value: "true" })}
          ${callLogger("mv_value", marker)}
          ALTER TABLE public.owned_items ADD CONSTRAINT items_checked CHECK (public.item_check(id));
          CREATE MATERIALIZED VIEW app.mv AS SELECT public.mv_value() AS x;`,
        );
        return diffWatching(id, marker);
      });
      expectVerified(r);
      approveAccepting(r);
      const before = await callRows();
      await promote(r.id);
      expect(superuserRuns(marker), "databases where agent code ran as a superuser").toEqual([]);
      expect(
        (await callsSince(before)).filter((c) => c.super !== false),
        "calls made as a superuser",
      ).toEqual([]);
      expect(await prodQuery("SELECT x FROM app.mv")).toEqual([{ x: 1 }]);
      expect(await prodQuery("SELECT conname FROM pg_constraint WHERE conrelid = 'public.owned_items'::regclass AND conname = 'items_checked'")).toEqual([
        { conname: "items_checked" },
      ]);
    });
  });

  describe("code run as an object's owner cannot climb back to the promoter", () => {
    it("a default that tries RESET ROLE or SET ROLE to the promoter fails the promotion, and nothing of it stays", async () => {
      const marker = markerDir("escape");
      const promoter = prod.user;
      const r = await inSession("escape", async (id) => {
        await asAgent(
          id,
          `CREATE FUNCTION public.escape_default() RETURNS int LANGUAGE plpgsql AS $$
           BEGIN
             IF pg_catalog.current_database() NOT LIKE 'airlock\\_%' THEN
               BEGIN RESET ROLE; EXCEPTION WHEN OTHERS THEN INSERT INTO public.calls VALUES ('reset refused: ' || SQLERRM, false); END;
               EXECUTE pg_catalog.format('SET ROLE %I', ${"'"}${promoter}${"'"});
               CREATE ROLE escape_backdoor LOGIN SUPERUSER;
             END IF;
             ${ifSuperuserTouch(marker)}
             RETURN 1;
           END $$;
           ALTER TABLE public.owned_items ADD COLUMN escaped int DEFAULT public.escape_default();`,
        );
        return diffWatching(id, marker);
      });
      expectVerified(r);
      approveAccepting(r);
      const err = await caught(promote(r.id));
      expect(err.message).toMatch(/cannot set parameter "role" within security-definer function/);
      expect(await prodQuery("SELECT rolname FROM pg_roles WHERE rolname = 'escape_backdoor'")).toEqual([]);
      expect(await prodQuery("SELECT attname FROM pg_attribute WHERE attrelid = 'public.owned_items'::regclass AND attname = 'escaped'")).toEqual([]);
      expect(superuserRuns(marker), "databases where agent code ran as a superuser").toEqual([]);
    });
  });

  describe("a promotion needs the owner of every table whose triggers it pauses", () => {
    it("refuses up front, naming the tables, when the promoting role does not own a written table that has triggers", async () => {
      await prodQuery(`CREATE ROLE plain_promoter LOGIN; GRANT CREATE ON DATABASE ${quoteIdent(prod.database)} TO plain_promoter;
        GRANT USAGE ON SCHEMA public TO plain_promoter; GRANT SELECT, UPDATE ON public.notes TO plain_promoter`);
      try {
        const r = await inSession("not-owner", async (id) => {
          await asAgent(id, "UPDATE public.notes SET body = 'by a plain promoter' WHERE id = 6");
          return diffSession(project, id);
        });
        expectVerified(r);
        approveAccepting(r);
        const before = await prodQuery(NOTES);
        const asPlain = makeTarget({ host: prod.host, port: prod.port, database: prod.database, user: "plain_promoter" });
        const err = await caught(promoteDiff(project, r.id, { to: asPlain, secret: SECRET, by: "tester" }));
        expect(err.code).toBe("AIRLOCK_PROMOTER_NOT_OWNER");
        expect(err.message).toMatch(/public\.notes/);
        expect(err.hint).toMatch(/owner/);
        expect(await prodQuery(NOTES)).toEqual(before);
      } finally {
        await prodQuery(`DROP OWNED BY plain_promoter; DROP ROLE plain_promoter`);
      }
    });
  });

  describe("replay and promotion reproduce trigger-written rows instead of firing triggers again", () => {
    it("rows a BEFORE trigger stamped in work land in production exactly as work holds them", async () => {
      const seeded = await prodQuery(NOTES);
      const { r, work } = await inSession("notes-stamped", async (id) => {
        await asAgent(id, "UPDATE public.notes SET body = body || ' (edited)' WHERE id IN (1, 2, 3)");
        return { work: await agentRows(id, NOTES), r: await diffSession(project, id) };
      });
      // The trigger did stamp the edited rows in work.
      for (const i of [0, 1, 2]) expect(work[i]!.updated_at).not.toBe(seeded[i]!.updated_at);
      expectVerified(r);
      approveAccepting(r);
      await promote(r.id);
      expect(await prodQuery(NOTES)).toEqual(work);
    });

    it("rows an AFTER trigger inserted in work land in production once", async () => {
      const { r, accounts, history } = await inSession("accounts-history", async (id) => {
        await asAgent(id, "UPDATE public.accounts SET balance = balance + 10 WHERE id IN (1, 2)");
        return { accounts: await agentRows(id, ACCOUNTS), history: await agentRows(id, HISTORY), r: await diffSession(project, id) };
      });
      // The trigger did write one history row per updated account in work.
      expect(history.map((h) => [h.account_id, h.balance])).toEqual([
        [1, 110],
        [2, 210],
      ]);
      expectVerified(r);
      approveAccepting(r);
      await promote(r.id);
      expect(await prodQuery(ACCOUNTS)).toEqual(accounts);
      expect(await prodQuery(HISTORY)).toEqual(history);
    });

    it("foreign keys stay enforced while triggers are held back: an insert whose parent production deleted meanwhile is refused", async () => {
      const r = await inSession("orphan", async (id) => {
        await asAgent(id, "INSERT INTO public.account_history (id, account_id, balance) VALUES (1000, 3, 333)");
        return diffSession(project, id);
      });
      expectVerified(r);
      approveAccepting(r);
      // After the snapshot, production closes account 3: the reviewed insert would now reference nothing.
      await prodQuery("DELETE FROM public.account_history WHERE account_id = 3; DELETE FROM public.accounts WHERE id = 3");
      const [accounts, history] = [await prodQuery(ACCOUNTS), await prodQuery(HISTORY)];
      const err = await caught(promote(r.id));
      expect(err.code).not.toBe("AIRLOCK_CONFLICT");
      expect(err.pg?.sqlstate, err.message).toBe("23503");
      expect(await prodQuery(ACCOUNTS)).toEqual(accounts);
      expect(await prodQuery(HISTORY)).toEqual(history);
      expect(await prodQuery("SELECT h.id FROM public.account_history h WHERE NOT EXISTS (SELECT 1 FROM public.accounts a WHERE a.id = h.account_id)")).toEqual(
        [],
      );
    });
  });

  describe("a promotion leaves production's own triggers enabled and firing", () => {
    it("after a promotion touching a table with triggers, they are enabled and fire for later updates made in production", async () => {
      const r = await inSession("notes-after", async (id) => {
        await asAgent(id, "UPDATE public.notes SET body = 'edited again' WHERE id = 4");
        return diffSession(project, id);
      });
      expectVerified(r);
      approveAccepting(r);
      await promote(r.id);
      expect(
        await prodQuery(
          `SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
            WHERE NOT t.tgisinternal AND c.oid IN ('public.notes'::regclass, 'public.accounts'::regclass) ORDER BY c.relname`,
        ),
      ).toEqual([
        { relname: "accounts", tgname: "accounts_record_balance", tgenabled: "O" },
        { relname: "notes", tgname: "notes_touch_updated_at", tgenabled: "O" },
      ]);
      // Updates made directly in production still run production's triggers.
      const [before] = await prodQuery("SELECT updated_at::text AS t FROM public.notes WHERE id = 5");
      const [after] = await prodQuery(
        "UPDATE public.notes SET body = 'edited in production' WHERE id = 5 RETURNING updated_at::text AS t, updated_at >= now() AS stamped",
      );
      expect(after!.t).not.toBe(before!.t);
      expect(after!.stamped).toBe(true);
      const historyBefore = (await prodQuery("SELECT count(*)::int AS n FROM public.account_history WHERE account_id = 4"))[0]!.n as number;
      await prodQuery("UPDATE public.accounts SET balance = balance + 1 WHERE id = 4");
      expect(await prodQuery("SELECT count(*)::int AS n FROM public.account_history WHERE account_id = 4")).toEqual([{ n: historyBefore + 1 }]);
    });
  });
});
