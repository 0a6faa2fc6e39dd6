/**
 * Deterministic masking: the same original masks alike for the same secret
 * and domain, differently for another secret, and always fits its column.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/config.ts";
import { copyText, copyValue } from "../src/pg/copy-text.ts";
import { FingerprintSet } from "../src/snapshot/fingerprint.ts";
import { LeakScanner } from "../src/snapshot/leak-scan.ts";
import { type MaskColumn, Masker, ruleFitProblem } from "../src/snapshot/mask.ts";
import type { MaskRule } from "../src/config/masking-rules.ts";

const SECRET = "a-test-secret-that-is-long-enough";
const col = (over: Partial<MaskColumn> = {}): MaskColumn => ({
  schema: "public",
  table: "t",
  column: "c",
  type: "text",
  baseType: "text",
  nullable: true,
  unique: false,
  ...over,
});
const email: MaskRule = { kind: "faker", generator: "email", domain: "email" };

describe("masking is deterministic", () => {
  it("masks the same value alike across maskers, tables and columns of one domain", () => {
    const a = new Masker(SECRET).mask(email, col({ table: "guests", column: "email" }), "ada@lovelace.org");
    const b = new Masker(SECRET).mask(email, col({ table: "newsletter", column: "address" }), "ada@lovelace.org");
    expect(a).toBe(b);
    expect(a).toMatch(/^[a-z0-9.]+@example\.com$/);
    expect(a).not.toContain("lovelace");
  });

  it("gives other values for another secret, and for columns without a shared domain", () => {
    const rule: MaskRule = { kind: "faker", generator: "fullName" };
    const one = new Masker(SECRET).mask(rule, col({ column: "a" }), "Grace Hopper");
    expect(new Masker(`${SECRET}-2`).mask(rule, col({ column: "a" }), "Grace Hopper")).not.toBe(one);
    expect(new Masker(SECRET).mask(rule, col({ column: "b" }), "Grace Hopper")).not.toBe(one);
  });

  it("keeps NULL as NULL and applies keep, null, constant and hash", () => {
    const m = new Masker(SECRET);
    expect(m.mask(email, col(), null)).toBeNull();
    expect(m.mask({ kind: "keep" }, col(), "x")).toBe("x");
    expect(m.mask({ kind: "null" }, col(), "x")).toBeNull();
    expect(m.mask({ kind: "constant", value: "redacted" }, col(), "x")).toBe("redacted");
    const h = m.mask({ kind: "hash" }, col({ maxLength: 12 }), "123-45-6789");
    expect(h).toMatch(/^[0-9a-f]{12}$/);
  });

  it("keeps an empty string empty under every rule that makes values, as it keeps NULL", () => {
    const m = new Masker(SECRET);
    const generators = [
      "email",
      "fullName",
      "firstName",
      "lastName",
      "phone",
      "streetAddress",
      "city",
      "postcode",
      "iban",
      "cardNumber",
      "ipv4",
      "username",
      "company",
      "text",
      "uuid",
    ] as const;
    const rules: MaskRule[] = [
      email,
      { kind: "hash" },
      ...generators.map((generator): MaskRule => ({ kind: "faker", generator })),
      { kind: "custom", fn: () => "fake" },
    ];
    for (const rule of rules) {
      expect(m.mask(rule, col(), ""), JSON.stringify(rule)).toBe("");
      expect(m.mask(rule, col({ unique: true, column: "u" }), ""), `${JSON.stringify(rule)} on a unique column`).toBe("");
      expect(m.mask(rule, col(), null), JSON.stringify(rule)).toBeNull();
    }
    // char(n) comes out of COPY blank-padded: blanks are its empty string.
    expect(m.mask(email, col({ type: "character(8)", baseType: "bpchar", maxLength: 8 }), "        ")).toBe("        ");
    // A value of blanks in a text column is a value, and an explicit null or constant still applies.
    expect(m.mask({ kind: "hash" }, col(), " ")).toMatch(/^[0-9a-f]{32}$/);
    expect(m.mask({ kind: "null" }, col(), "")).toBeNull();
    expect(m.mask({ kind: "constant", value: "redacted" }, col(), "")).toBe("redacted");
  });

  it("shifts dates by a deterministic offset within the bound and keeps the time of day", () => {
    const m = new Masker(SECRET);
    const rule: MaskRule = { kind: "dateShift", maxDays: 30 };
    const out = m.mask(rule, col({ baseType: "timestamptz" }), "1990-05-17 08:30:00+00")!;
    expect(out).toMatch(/^\d{4}-\d{2}-\d{2} 08:30:00\+00$/);
    const days = Math.abs(Date.parse(out.slice(0, 10)) - Date.parse("1990-05-17")) / 86_400_000;
    expect(days).toBeGreaterThanOrEqual(1);
    expect(days).toBeLessThanOrEqual(30);
    expect(new Masker(SECRET).mask(rule, col({ baseType: "timestamptz" }), "1990-05-17 08:30:00+00")).toBe(out);
    expect(m.mask(rule, col({ baseType: "date" }), "infinity")).toBe("infinity");
  });

  it("fits the column's length and keeps unique columns unique by re-drawing collisions", () => {
    const m = new Masker(SECRET);
    const narrow = col({ type: "character varying(4)", baseType: "varchar", maxLength: 4, unique: true });
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const v = m.mask({ kind: "faker", generator: "lastName" }, narrow, `original-${i}`)!;
      expect(v.length).toBeLessThanOrEqual(4);
      expect(seen.has(v)).toBe(false);
      seen.add(v);
    }
    const text = m.mask({ kind: "faker", generator: "text" }, col(), "A review of about forty characters long.")!;
    expect(text.length).toBe("A review of about forty characters long.".length);
  });

  it("refuses a weak secret", () => {
    expect(() => new Masker("short")).toThrow(expect.objectContaining({ code: "AIRLOCK_SECRET_WEAK" }));
  });
});

describe("a rule must fit its column", () => {
  it("names rules whose output cannot fit the column's type or length", () => {
    expect(ruleFitProblem(email, col({ type: "integer", baseType: "int4" }))).toMatch(/produces text/);
    expect(ruleFitProblem(email, col({ type: "character varying(10)", baseType: "varchar", maxLength: 10 }))).toMatch(/at least 20/);
    expect(ruleFitProblem({ kind: "null" }, col({ nullable: false }))).toMatch(/NOT NULL/);
    expect(ruleFitProblem({ kind: "dateShift", maxDays: 5 }, col())).toMatch(/date or timestamp/);
    expect(ruleFitProblem(email, col())).toBeUndefined();
    expect(ruleFitProblem({ kind: "faker", generator: "uuid" }, col({ type: "uuid", baseType: "uuid" }))).toBeUndefined();
  });

  it("validates rules in airlock.config.ts, listing every bad one", () => {
    expect(() =>
      parseConfig({
        masking: { rules: { "guests.email": "emial", "bad key": "keep", "t.c": { faker: "email", hash: true }, "t.d": { dateShift: { maxDays: 0 } } } },
      }),
    ).toThrow(
      expect.objectContaining({
        code: "AIRLOCK_CONFIG_INVALID",
        details: {
          problems: expect.arrayContaining([
            expect.objectContaining({ path: "masking.rules.guests.email" }),
            expect.objectContaining({ path: "masking.rules.bad key" }),
            expect.objectContaining({ path: "masking.rules.t.c" }),
            expect.objectContaining({ path: "masking.rules.t.d.dateShift.maxDays" }),
          ]),
        },
      }),
    );
    const ok = parseConfig({ masking: { rules: { "guests.email": { faker: "email", domain: "email" }, "crm.people.dob": { dateShift: { maxDays: 10 } } } } });
    expect(Object.keys(ok.masking.rules)).toEqual(["public.guests.email", "crm.people.dob"]);
  });
});

describe("COPY text and the leak scanner's fingerprints", () => {
  it("round-trips every special character through COPY text", () => {
    for (const v of ["plain", "tab\there", "new\nline", "cr\rx", "back\\slash", "\\N", "", "ünï😀", "\b\f\v"]) expect(copyValue(copyText(v))).toBe(v);
    expect(copyValue("\\N")).toBeNull();
    expect(copyText(null)).toBe("\\N");
  });

  it("finds originals as whole fields and as words, but not the masker's own outputs", () => {
    const s = new LeakScanner();
    s.addOriginal("ada@lovelace.org");
    s.addOriginal("Smith");
    s.addOriginal("Springfield");
    s.addProduced("Springfield");
    expect(s.leaks("ada@lovelace.org")).toBe(true);
    expect(s.leaks("please mail ada@lovelace.org, thanks")).toBe(true);
    expect(s.leaks("Smith")).toBe(false); // too short to tell from ordinary words
    expect(s.leaks("Springfield")).toBe(false);
    expect(s.leaks("nothing to see")).toBe(false);
    const f = new FingerprintSet();
    for (let i = 0; i < 10_000; i++) f.add(`v${i}`);
    expect(f.size).toBe(10_000);
    expect(f.has("v9999")).toBe(true);
    expect(f.has("v10000")).toBe(false);
  });
});
