/**
 * Deterministic masking. A masked value depends only on the operator's
 * secret, the rule's domain and the original value: the seed of every
 * generated value is HMAC(secret, domain, original). So the same email masks
 * to the same fake email in every table and every snapshot, joins still
 * join, and nobody without the secret can map a fake back to the original.
 * NULL and the empty string are kept as they are: neither identifies anyone.
 */
import { Faker, base, en } from "@faker-js/faker";
import { AirlockError } from "../errors.ts";
import { KeyedHmac } from "./keyed-hmac.ts";
import type { FakerGenerator, MaskRule } from "../config/masking-rules.ts";

/** What the masker needs to know about a column. */
export interface MaskColumn {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /** The type as format_type prints it, e.g. "character varying(80)". */
  readonly type: string;
  /** The base type's name (domains resolved), e.g. "varchar", "text", "date". */
  readonly baseType: string;
  /** Maximum length in characters for varchar(n)/char(n), else undefined. */
  readonly maxLength?: number;
  readonly nullable: boolean;
  /** Part of a primary key or unique constraint on its own: masked values must stay distinct. */
  readonly unique: boolean;
}

/** "schema.table.column" */
export function columnKey(c: Pick<MaskColumn, "schema" | "table" | "column">): string {
  return `${c.schema}.${c.table}.${c.column}`;
}

const TEXT_TYPES = new Set(["text", "varchar", "bpchar", "citext", "name"]);
const DATE_TYPES = new Set(["date", "timestamp", "timestamptz"]);

/** The shortest column each generator's output can be cut to and still be what it claims. */
const MIN_LENGTH: Readonly<Record<FakerGenerator, number>> = {
  email: 20,
  fullName: 8,
  firstName: 3,
  lastName: 3,
  phone: 12,
  streetAddress: 10,
  city: 3,
  postcode: 5,
  iban: 34,
  cardNumber: 19,
  ipv4: 15,
  username: 6,
  company: 6,
  text: 1,
  uuid: 36,
};

/**
 * Checks that a rule's output can fit its column (type and length); returns
 * the problem as text, or undefined when it fits. Constants are checked by
 * the server at capture (a cast), custom functions at run time.
 */
export function ruleFitProblem(rule: MaskRule, column: MaskColumn): string | undefined {
  const text = TEXT_TYPES.has(column.baseType);
  switch (rule.kind) {
    case "keep":
      return undefined;
    case "null":
      return column.nullable ? undefined : `the column is NOT NULL, so the rule "null" cannot fit it`;
    case "constant":
      if (rule.value === null && !column.nullable) return "the column is NOT NULL, so a null constant cannot fit it";
      if (rule.value !== null && column.maxLength !== undefined && rule.value.length > column.maxLength)
        return `the constant is ${rule.value.length} characters, the column holds ${column.maxLength}`;
      return undefined;
    case "hash":
      if (!text) return `hash produces text, but the column is ${column.type}`;
      if (column.maxLength !== undefined && column.maxLength < 8) return `hash needs at least 8 characters, the column holds ${column.maxLength}`;
      return undefined;
    case "faker": {
      if (rule.generator === "uuid" ? !(text || column.baseType === "uuid") : !text)
        return `faker ${rule.generator} produces text, but the column is ${column.type}`;
      const min = MIN_LENGTH[rule.generator];
      if (column.maxLength !== undefined && column.maxLength < min)
        return `faker ${rule.generator} needs at least ${min} characters, the column holds ${column.maxLength}`;
      return undefined;
    }
    case "dateShift":
      return DATE_TYPES.has(column.baseType) ? undefined : `dateShift needs a date or timestamp column, but the column is ${column.type}`;
    case "custom":
      return undefined;
  }
}

// A tiny seedable generator (sfc32) so that seeding per value costs nothing;
// faker's own Mersenne Twister seeding is ~50 µs per value. Faker calls
// next() unbound, so the state lives in a closure.
function sfc32(): { next(): number; seed(seed: number | number[]): void } {
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  const seed = (s: number | number[]): void => {
    const v = Array.isArray(s) ? s : [s, 0, 0, 0];
    a = v[0] ?? 0;
    b = v[1] ?? 0;
    c = v[2] ?? 0;
    d = v[3] ?? 1;
    for (let i = 0; i < 12; i++) next();
  };
  return { next, seed };
}

function asciiSlug(s: string): string {
  return s
    .normalize("NFKD")
    .replace(/[^A-Za-z0-9]/g, "")
    .toLowerCase();
}

function fit(value: string, maxLength: number | undefined): string {
  return maxLength === undefined || value.length <= maxLength ? value : value.slice(0, maxLength).trimEnd();
}

/** An empty string; for char(n), which COPY writes blank-padded, only blanks. */
function isEmpty(value: string, column: MaskColumn): boolean {
  return value === "" || (column.baseType === "bpchar" && !/[^ ]/.test(value));
}

const DATE_RE = /^(\d{4,})-(\d{2})-(\d{2})(.*)$/;

function shiftDate(value: string, days: number): string {
  const m = DATE_RE.exec(value);
  // infinity, -infinity and BC dates carry no personal data; leave them.
  if (m === null || value.endsWith(" BC")) return value;
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) + days * 86_400_000;
  const d = new Date(t);
  const y = String(d.getUTCFullYear()).padStart(4, "0");
  return `${y}-${String(d.getUTCMonth() + 1).padStart(2, "0")}-${String(d.getUTCDate()).padStart(2, "0")}${m[4]}`;
}

/** Masks values column by column; one instance per capture. */
export class Masker {
  private readonly keyed: KeyedHmac;
  private readonly rng = sfc32();
  private readonly faker = new Faker({ locale: [en, base], randomizer: this.rng });
  /** Masked values already used, per unique column: a collision is re-drawn deterministically. */
  private readonly taken = new Map<string, Set<string>>();
  /** Re-drawn values per domain, so other columns of the domain follow the same mapping. */
  private readonly redrawn = new Map<string, string>();

  constructor(secret: string) {
    if (secret.length < 16) {
      throw new AirlockError("AIRLOCK_SECRET_WEAK", "AIRLOCK_SECRET is missing or shorter than 16 characters", {
        hint: "set AIRLOCK_SECRET in .env to a long random string (e.g. `openssl rand -base64 32`) and keep it stable",
      });
    }
    this.keyed = new KeyedHmac(secret);
  }

  /** The seed bytes for a value in a domain. */
  seed(domain: string, value: string): Buffer {
    return this.keyed.digest(`${domain}\u0000${value}`);
  }

  /** Masks one value (Postgres text form; null is SQL NULL). */
  mask(rule: MaskRule, column: MaskColumn, value: string | null): string | null {
    if (rule.kind === "keep") return value;
    if (rule.kind === "null") return null;
    if (rule.kind === "constant") return rule.value;
    // An empty value says nothing about anyone: like NULL it stays as it is, and a fake in its place would be
    // a value production never had (an "unset" email that suddenly looks like a real address).
    if (value === null || isEmpty(value, column)) return value;
    const domain = ("domain" in rule ? rule.domain : undefined) ?? columnKey(column);
    if (this.redrawn.size > 0) {
      const again = this.redrawn.get(`${domain}\u0000${value}`);
      if (again !== undefined) return again;
    }
    let out = this.generate(rule, column, domain, value, this.seed(domain, value));
    if (column.unique && out !== null) {
      const key = columnKey(column);
      let set = this.taken.get(key);
      if (set === undefined) this.taken.set(key, (set = new Set()));
      for (let attempt = 1; set.has(out!) && attempt <= 100; attempt++) {
        out = this.generate(rule, column, domain, value, this.seed(domain, `${value}\u0000${attempt}`));
        this.redrawn.set(`${domain}\u0000${value}`, out!);
      }
      if (set.has(out!)) {
        throw new AirlockError("AIRLOCK_MASK_NOT_UNIQUE", `cannot keep ${key} unique after masking: the rule's outputs collide`, {
          hint: "use a rule with more distinct outputs for this unique column (hash, email) or a wider column",
        });
      }
      set.add(out!);
    }
    return out;
  }

  private generate(rule: MaskRule, column: MaskColumn, domain: string, value: string, seed: Buffer): string | null {
    switch (rule.kind) {
      case "hash":
        return fit(seed.toString("hex").slice(0, 32), column.maxLength);
      case "dateShift": {
        const span = 2 * rule.maxDays + 1;
        const offset = (seed.readUInt32BE(0) % span) - rule.maxDays;
        return shiftDate(value, offset === 0 ? 1 : offset);
      }
      case "custom": {
        const out = rule.fn(value, { seed: new Uint8Array(seed), column: columnKey(column) });
        if (out !== null && typeof out !== "string") {
          throw new AirlockError("AIRLOCK_MASK_BAD_OUTPUT", `the custom rule for ${columnKey(column)} returned a ${typeof out}, not a string or null`, {
            hint: "return the masked value as Postgres text",
          });
        }
        if (out !== null && column.maxLength !== undefined && out.length > column.maxLength) {
          throw new AirlockError(
            "AIRLOCK_MASK_DOES_NOT_FIT",
            `the custom rule for ${columnKey(column)} returned ${out.length} characters; the column holds ${column.maxLength}`,
            { hint: "shorten the custom rule's output" },
          );
        }
        if (out === null && !column.nullable) {
          throw new AirlockError("AIRLOCK_MASK_DOES_NOT_FIT", `the custom rule for ${columnKey(column)} returned null for a NOT NULL column`, {
            hint: "return a value",
          });
        }
        return out;
      }
      case "faker":
        this.rng.seed([seed.readInt32BE(0), seed.readInt32BE(4), seed.readInt32BE(8), seed.readInt32BE(12)]);
        return this.fake(rule.generator, column, value, seed);
      default:
        return value;
    }
    void domain;
  }

  private fake(generator: FakerGenerator, column: MaskColumn, original: string, seed: Buffer): string {
    const f = this.faker;
    const max = column.maxLength;
    switch (generator) {
      case "email": {
        // The hex tag keeps emails distinct; example.com never delivers mail.
        const tag = seed.toString("hex", 16, 20);
        const full = `${asciiSlug(f.person.firstName())}.${asciiSlug(f.person.lastName())}.${tag}@example.com`;
        return max === undefined || full.length <= max ? full : `u${tag}@example.com`;
      }
      case "fullName":
        return fit(`${f.person.firstName()} ${f.person.lastName()}`, max);
      case "firstName":
        return fit(f.person.firstName(), max);
      case "lastName":
        return fit(f.person.lastName(), max);
      case "phone":
        return fit(f.phone.number({ style: "international" }), max);
      case "streetAddress":
        return fit(f.location.streetAddress(), max);
      case "city":
        return fit(f.location.city(), max);
      case "postcode":
        return fit(f.location.zipCode(), max);
      case "iban":
        return f.finance.iban();
      case "cardNumber":
        return f.finance.creditCardNumber();
      case "ipv4":
        return f.internet.ipv4();
      case "username":
        return fit(f.internet.username(), max);
      case "company":
        return fit(f.company.name(), max);
      case "uuid":
        return f.string.uuid();
      case "text": {
        // Free text of about the same length, so layouts and limits still behave.
        const target = Math.min(original.length, max ?? Number.POSITIVE_INFINITY);
        if (target === 0) return "";
        let s = "";
        while (s.length < target) s += (s === "" ? "" : " ") + f.lorem.word();
        return s.slice(0, target).trimEnd() || s.slice(0, target);
      }
    }
  }
}
