/**
 * PII detection: column names and sampled values flag personal data before a
 * capture, with reasons that never carry a sampled value.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PgTarget, query, withClient } from "../src/pg/connect.ts";
import { classifyByName } from "../src/snapshot/pii-names.ts";
import { rulesBlock } from "../src/snapshot/pii-render.ts";
import { classifyByValues } from "../src/snapshot/pii-values.ts";
import { type PiiColumn, detectPii } from "../src/snapshot/pii.ts";
import { type MaskRule, maskRule, ruleKey } from "../src/config/masking-rules.ts";
import type { Problem } from "../src/config/schema.ts";
import { type TestCluster, startTestCluster } from "./helpers/cluster.ts";

const fake = (generator: string, domain?: string) => ({ kind: "faker", generator, ...(domain === undefined ? {} : { domain }) });
const suggestedByValues = (values: readonly string[], type = "text") => classifyByValues(values, type)?.suggested;

describe("classifyByName", () => {
  it.each([
    ["users", "email", "text", fake("email", "email")],
    ["orders", "e_mail", "character varying(120)", fake("email", "email")],
    ["orders", "mail", "text", fake("email", "email")],
    ["orders", "emailAddress", "citext", fake("email", "email")],
    ["invoices", "billing_email_address", "text", fake("email", "email")],
    ["users", "email_hash", "text", { kind: "hash" }],
    ["users", "phone", "text", fake("phone")],
    ["users", "mobile_number", "character varying(20)", fake("phone")],
    ["users", "homePhone", "text", fake("phone")],
    ["contacts", "fax", "text", fake("phone")],
    ["contacts", "tel", "text", fake("phone")],
    ["users", "phone", "bigint", { kind: "null" }],
    ["orders", "first_name", "text", fake("firstName")],
    ["orders", "givenName", "text", fake("firstName")],
    ["orders", "surname", "text", fake("lastName")],
    ["orders", "family_name", "text", fake("lastName")],
    ["orders", "full_name", "text", fake("fullName")],
    ["payments", "card_holder_name", "text", fake("fullName")],
    ["tickets", "contact_name", "text", fake("fullName")],
    ["customers", "name", "text", fake("fullName")],
    ["app_users", "name", "character varying(80)", fake("fullName")],
    ["people", "display_name", "text", fake("fullName")],
    ["accounts", "username", "text", fake("username")],
    ["addresses", "street", "text", fake("streetAddress")],
    ["addresses", "address_line1", "text", fake("streetAddress")],
    ["orders", "shipping_address", "text", fake("streetAddress")],
    ["addresses", "street_name", "text", fake("streetAddress")],
    ["addresses", "postcode", "text", fake("postcode")],
    ["addresses", "zip_code", "character(5)", fake("postcode")],
    ["addresses", "postal_code", "text", fake("postcode")],
    ["addresses", "city", "text", fake("city")],
    ["addresses", "address_city", "text", fake("city")],
    ["bank_accounts", "iban", "text", fake("iban")],
    ["bank_accounts", "account_number", "text", { kind: "hash" }],
    ["payments", "card_number", "text", fake("cardNumber")],
    ["payments", "cc_number", "text", fake("cardNumber")],
    ["payments", "pan", "text", fake("cardNumber")],
    ["payments", "creditCardNumber", "text", fake("cardNumber")],
    ["sessions", "ip_address", "text", fake("ipv4")],
    ["users", "last_sign_in_ip", "inet", { kind: "constant", value: "192.0.2.1" }],
    ["sessions", "remote_addr", "cidr", { kind: "constant", value: "192.0.2.1" }],
    ["patients", "dob", "date", { kind: "dateShift", maxDays: 30 }],
    ["patients", "date_of_birth", "timestamp without time zone", { kind: "dateShift", maxDays: 30 }],
    ["patients", "birth_date", "text", { kind: "hash" }],
    ["employees", "ssn", "text", { kind: "hash" }],
    ["employees", "ssn_last4", "character(4)", { kind: "hash" }],
    ["employees", "passport_number", "text", { kind: "hash" }],
    ["companies", "tax_id", "text", { kind: "hash" }],
    ["citizens", "national_id", "bigint", { kind: "null" }],
    ["users", "password_hash", "text", { kind: "null" }],
    ["users", "encrypted_password", "character varying(255)", { kind: "null" }],
    ["integrations", "api_key", "text", { kind: "null" }],
    ["integrations", "refresh_token", "bytea", { kind: "null" }],
    ["users", "pin", "integer", { kind: "null" }],
  ])("%s.%s (%s) is PII", (table, column, type, suggested) => {
    const found = classifyByName(table, column, type);
    expect(found?.suggested).toEqual(suggested);
    expect(found?.reason).toMatch(/^name looks like /);
  });

  it.each([
    ["information_schema_tables", "table_name", "name"],
    ["uploads", "file_name", "text"],
    ["products", "name", "text"],
    ["oauth_clients", "name", "text"],
    ["user_roles", "name", "text"],
    ["products", "category", "text"],
    ["links", "url", "text"],
    ["posts", "title", "text"],
    ["orders", "status", "text"],
    ["users", "email_verified", "boolean"],
    ["users", "email_verified_at", "timestamp with time zone"],
    ["users", "email_status", "text"],
    ["campaigns", "email_template", "text"],
    ["users", "email_count", "integer"],
    ["users", "phone_country_code", "text"],
    ["devices", "mobile_app_version", "text"],
    ["spreadsheets", "cell_value", "text"],
    ["payments", "card_last4", "character(4)"],
    ["payments", "card_last_four", "text"],
    ["payments", "credit_card_last4", "text"],
    ["payments", "card_brand", "text"],
    ["payments", "card_exp_month", "integer"],
    ["tokens", "token_type", "text"],
    ["completions", "max_tokens", "integer"],
    ["completions", "tokens_used", "bigint"],
    ["users", "password_changed_at", "timestamp with time zone"],
    ["uploads", "zip_file", "text"],
    ["devices", "mac_address", "macaddr"],
    ["devices", "mac_address", "text"],
    ["wallets", "wallet_address", "text"],
    ["users", "address_id", "integer"],
    ["users", "address_type", "text"],
    ["stores", "city_id", "integer"],
    ["sessions", "ip_country", "text"],
    ["users", "passport_country", "text"],
    ["users", "created_at", "timestamp with time zone"],
    ["microphones", "microphone", "text"],
    ["users", "ethnicity", "text"],
    ["users", "login_count", "integer"],
    ["users", "last_login", "timestamp with time zone"],
    ["users", "email_addresses", "text[]"],
  ])("%s.%s (%s) is not flagged by name", (table, column, type) => {
    expect(classifyByName(table, column, type)).toBeUndefined();
  });

  it("says a city is borderline", () => {
    expect(classifyByName("stores", "city", "text")?.reason).toMatch(/borderline/);
  });
});

describe("classifyByValues", () => {
  const filler = (n: number) => Array.from({ length: n }, (_, i) => `widget ${i}`);

  it("flags a column of email addresses and says how many, never which", () => {
    const values = ["ada@example.com", "grace.hopper@navy.example.org", "LINUS+tag@kernel.example", "not an email"];
    const found = classifyByValues(values, "text");
    expect(found).toEqual({ reason: "75% of 4 sampled values are email addresses", suggested: fake("email", "email") });
    for (const v of values) expect(found?.reason).not.toContain(v);
  });

  it("flags at 30% and not below", () => {
    const emails = (n: number) => Array.from({ length: n }, (_, i) => `person${i}@example.com`);
    expect(suggestedByValues([...emails(3), ...filler(7)])).toEqual(fake("email", "email"));
    expect(suggestedByValues([...emails(2), ...filler(8)])).toBeUndefined();
  });

  it("suggests text for free text that mentions email addresses", () => {
    const notes = ["Called back, new email is ada@example.com", "prefers contact via g.hopper@example.org after 5pm", "no answer", "VIP"];
    expect(classifyByValues(notes, "text")).toEqual({ reason: "50% of 4 sampled values are or contain email addresses", suggested: fake("text") });
  });

  it("suggests text for a mix of PII kinds that each stay under the threshold", () => {
    const mixed = ["ada@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "plain", "plain", "plain", "plain", "plain"];
    expect(suggestedByValues(mixed)).toEqual(fake("text"));
  });

  it("recognises phone numbers in common formats but not dates, decimals or ZIP+4", () => {
    expect(suggestedByValues(["+1 (555) 123-4567", "020 7946 0958", "+4915112345678", "555.123.4567", "(03) 9123 4567 ext. 12"])).toEqual(fake("phone"));
    expect(suggestedByValues(["2024-01-15", "15.01.2024", "01/15/2024", "1234567.89", "12345-6789", "1234567"])).toBeUndefined();
  });

  it("needs the Luhn check for a card number: a 16-digit number failing it is not a card", () => {
    expect(suggestedByValues(["4111111111111111", "5555 5555 5555 4444", "3782-822463-10005"])).toEqual(fake("cardNumber"));
    expect(suggestedByValues(["4111111111111112", "5555 5555 5555 4445", "3782-822463-10006"])).toBeUndefined();
    // All zeros passes Luhn but is no card; an order number starting with 9 is no payment network.
    expect(suggestedByValues(["0000000000000000", "9111111111111111"])).toBeUndefined();
  });

  it("needs the mod-97 check for an IBAN", () => {
    expect(suggestedByValues(["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "fr1420041010050500013m02606"])).toEqual(fake("iban"));
    expect(suggestedByValues(["GB82 WEST 1234 5698 7654 33", "DE89370400440532013001", "FR1420041010050500013M02607"])).toBeUndefined();
  });

  it("recognises IPv4 and IPv6 addresses", () => {
    expect(suggestedByValues(["192.168.1.10", "10.0.0.1", "2001:db8::1", "fe80::1ff:fe23:4567:890a", "203.0.113.0/24"])).toEqual(fake("ipv4"));
    expect(suggestedByValues(["999.1.1.1", "1.2.3", "10.0.19045.2965"])).toBeUndefined();
  });

  it("recognises person names by a known first name, and not other capitalised pairs", () => {
    expect(suggestedByValues(["Alice Johnson", "David R. Miller", "Maria O'Brien", "John McDonald"])).toEqual(fake("fullName"));
    expect(suggestedByValues(["Acme Widgets", "Blue Harbor", "Quarterly Report", "alice johnson", "ALICE JOHNSON", "Alice"])).toBeUndefined();
  });

  it("recognises street addresses", () => {
    expect(suggestedByValues(["221B Baker Street", "350 Fifth Ave., Suite 3300", "1600 Pennsylvania Avenue NW", "12 Elm Rd", "Hauptstraße 5"])).toEqual(
      fake("streetAddress"),
    );
    expect(suggestedByValues(["3 pieces", "12 red apples", "Street food", "Main St"])).toBeUndefined();
  });

  it("ignores non-text types, empty samples and plain data", () => {
    expect(classifyByValues(["ada@example.com"], "integer")).toBeUndefined();
    expect(classifyByValues([], "text")).toBeUndefined();
    expect(classifyByValues(["pending", "shipped", "delivered", "https://example.com/a", "SKU-123456789"], "text")).toBeUndefined();
  });
});

describe("rulesBlock", () => {
  const col = (table: string, column: string, type = "text"): PiiColumn => ({ schema: "public", table, column, type });
  const suspicions = [
    { column: col("customers", "contact"), reasons: ["100% of 4 sampled values are email addresses"], suggested: fake("email", "email") as MaskRule },
    { column: col("customers", "dob", "date"), reasons: ["name looks like a date of birth column"], suggested: { kind: "dateShift", maxDays: 30 } as MaskRule },
    { column: col("customers", "ssn"), reasons: ["name looks like a national id, tax id or passport number column"], suggested: { kind: "hash" } as MaskRule },
    { column: col("users", "password_hash"), reasons: ["name looks like a password, token or other secret"], suggested: { kind: "null" } as MaskRule },
    {
      column: col("sessions", "ip", "inet"),
      reasons: ["name looks like an IP address column"],
      suggested: { kind: "constant", value: "192.0.2.1" } as MaskRule,
    },
    {
      column: col("customers", "phone"),
      reasons: ["name looks like a phone number column", "80% of 5 sampled values are phone numbers"],
      suggested: fake("phone") as MaskRule,
    },
  ];

  it("writes one line per column, with the reasons as a comment", () => {
    expect(rulesBlock(suspicions)).toBe(
      [
        "// Suggested by `airlock snapshot --init-rules`: review each line, then put this block inside `masking` in airlock.config.ts.",
        "rules: {",
        '  "public.customers.contact": { faker: "email", domain: "email" }, // 100% of 4 sampled values are email addresses',
        '  "public.customers.dob": { dateShift: { maxDays: 30 } }, // name looks like a date of birth column',
        '  "public.customers.ssn": "hash", // name looks like a national id, tax id or passport number column',
        '  "public.users.password_hash": "null", // name looks like a password, token or other secret',
        '  "public.sessions.ip": { constant: "192.0.2.1" }, // name looks like an IP address column',
        '  "public.customers.phone": "phone", // name looks like a phone number column; 80% of 5 sampled values are phone numbers',
        "},",
        "",
      ].join("\n"),
    );
  });

  it("is source that airlock.config.ts accepts: every key and rule parses back to the suggestion", () => {
    const block = rulesBlock(suspicions);
    const parsed = new Function(`return {\n${block}\n};`)() as { rules: Record<string, unknown> };
    const problems: Problem[] = [];
    const back = Object.entries(parsed.rules).map(([k, v]) => [ruleKey(k, "k", problems), maskRule(v, `rules.${k}`, problems)]);
    expect(problems).toEqual([]);
    expect(back).toEqual(suspicions.map((s) => [`public.${s.column.table}.${s.column.column}`, s.suggested]));
  });

  it("comments out a column whose name cannot be a rule key", () => {
    const block = rulesBlock([
      { column: col("Order Lines", "e-mail"), reasons: ["name looks like an email column"], suggested: fake("email", "email") as MaskRule },
    ]);
    expect(block).toContain(
      '  // "public.Order Lines.e-mail": { faker: "email", domain: "email" }, // name looks like an email column (cannot be a rule key: the name needs quoting)',
    );
    const parsed = new Function(`return {\n${block}\n};`)() as { rules: Record<string, unknown> };
    expect(parsed.rules).toEqual({});
  });

  it("writes an empty block when nothing is suspected", () => {
    expect(rulesBlock([])).toMatch(/\nrules: \{\n\},\n$/);
  });
});

describe("detectPii against a real database", () => {
  let tc: TestCluster;
  let target: PgTarget;
  const rows = [
    {
      contact: "ada.lovelace@example.com",
      notes: "Prefers email: ada.l@example.net",
      last4: "4242",
      email: "ada@example.org",
      phone: "+44 20 7946 0958",
      name: "Ada Lovelace",
      dob: "1815-12-10",
      ip: "203.0.113.7",
      code: "AX-1",
    },
    {
      contact: "grace.hopper@example.com",
      notes: "Asked about invoice 1042; write to grace@example.net",
      last4: "1881",
      email: "grace@example.org",
      phone: "+1 (555) 123-4567",
      name: "Grace Hopper",
      dob: "1906-12-09",
      ip: "203.0.113.8",
      code: "AX-2",
    },
    {
      contact: "alan.turing@example.com",
      notes: "VIP",
      last4: "0005",
      email: "alan@example.org",
      phone: "020 7946 0000",
      name: "Alan Turing",
      dob: "1912-06-23",
      ip: "2001:db8::7",
      code: "AX-3",
    },
    {
      contact: "katherine.j@example.com",
      notes: "call back on Monday",
      last4: "5100",
      email: "kj@example.org",
      phone: "555.987.6543",
      name: "Katherine Johnson",
      dob: "1918-08-26",
      ip: "198.51.100.1",
      code: "AX-4",
    },
  ];

  beforeAll(async () => {
    tc = await startTestCluster("pii");
    target = await tc.createDatabase("pii_test");
    await withClient(target, { step: "test", searchPath: "public" }, async (c) => {
      await c.query(`CREATE SCHEMA crm`);
      await c.query(`CREATE TABLE crm.customers (
        id serial PRIMARY KEY, contact text, notes text, card_last4 character(4), email character varying(120),
        mobile character varying(40), name text, dob date, last_ip inet, code text, email_verified boolean, created_at timestamptz DEFAULT now())`);
      for (const r of rows) {
        await c.query(
          `INSERT INTO crm.customers (contact, notes, card_last4, email, mobile, name, dob, last_ip, code, email_verified) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,true)`,
          [r.contact, r.notes, r.last4, r.email, r.phone, r.name, r.dob, r.ip, r.code],
        );
      }
      await c.query(`CREATE TABLE public.products (id serial PRIMARY KEY, name text, category text, sku text)`);
      await c.query(
        `INSERT INTO public.products (name, category, sku) VALUES ('Blue Widget', 'tools', 'W-1'), ('Red Gadget', 'toys', 'G-7'), ('Brass Lamp', 'home', 'L-3')`,
      );
      await c.query(`CREATE TABLE public."Mixed Case" ("Reply To" text)`);
      await c.query(`INSERT INTO public."Mixed Case" SELECT 'user' || g || '@example.com' FROM generate_series(1, 50) g`);
    });
  });
  afterAll(async () => tc?.close());

  async function columnsOf(c: import("pg").ClientBase): Promise<PiiColumn[]> {
    const r = await query<PiiColumn>(
      c,
      `SELECT n.nspname AS schema, cl.relname AS "table", a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
         FROM pg_attribute a JOIN pg_class cl ON cl.oid = a.attrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
        WHERE cl.relkind = 'r' AND n.nspname IN ('public', 'crm') AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum DESC`,
    );
    return r.rows;
  }

  it("flags columns by name and by values, sorted, inside the caller's read-only transaction, and leaks no value", async () => {
    const findings = await withClient(target, { step: "test", searchPath: "public" }, async (c) => {
      await c.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const found = await detectPii(c, await columnsOf(c));
      // Still inside the caller's transaction: detectPii neither committed nor rolled back.
      expect((await c.query("SELECT current_setting('transaction_read_only') AS ro")).rows[0]).toEqual({ ro: "on" });
      await c.query("ROLLBACK");
      return found;
    });

    expect(findings.map((f) => [`${f.column.schema}.${f.column.table}.${f.column.column}`, f.suggested])).toEqual([
      ["crm.customers.contact", fake("email", "email")],
      ["crm.customers.dob", { kind: "dateShift", maxDays: 30 }],
      ["crm.customers.email", fake("email", "email")],
      ["crm.customers.last_ip", { kind: "constant", value: "192.0.2.1" }],
      ["crm.customers.mobile", fake("phone")],
      ["crm.customers.name", fake("fullName")],
      ["crm.customers.notes", fake("text")],
      ["public.Mixed Case.Reply To", fake("email", "email")],
    ]);
    const byKey = new Map(findings.map((f) => [`${f.column.table}.${f.column.column}`, f]));
    expect(byKey.get("customers.contact")?.reasons).toEqual(["100% of 4 sampled values are email addresses"]);
    expect(byKey.get("customers.email")?.reasons).toEqual(["name looks like an email column", "100% of 4 sampled values are email addresses"]);
    expect(byKey.get("customers.notes")?.reasons).toEqual(["50% of 4 sampled values are or contain email addresses"]);
    expect(byKey.get("customers.email")?.column).toEqual({ schema: "crm", table: "customers", column: "email", type: "character varying(120)" });

    const json = JSON.stringify(findings) + rulesBlock(findings);
    const sampled = [...rows.flatMap((r) => Object.values(r)), "ada.l@example.net", "grace@example.net", "user1@example.com", "example.com", "example.org"];
    for (const v of sampled) expect(json).not.toContain(v);
  });

  it("samples at most sampleSize values per column", async () => {
    const findings = await withClient(target, { step: "test", searchPath: "public" }, (c) =>
      detectPii(c, [{ schema: "public", table: "Mixed Case", column: "Reply To", type: "text" }], { sampleSize: 10 }),
    );
    expect(findings).toHaveLength(1);
    expect(findings[0]?.reasons).toEqual(["100% of 10 sampled values are email addresses"]);
  });
});
