/**
 * Masking rules as written in airlock.config.ts, and their validation.
 * A rule says what a production column becomes in the snapshot (the
 * capture in src/snapshot/ applies them; the config only reads them).
 */
import { z } from "zod";
import { type Schema, checker, object, parseInto } from "./schema.ts";

/** The faker-backed generators a rule can name. */
export const FAKER_GENERATORS = [
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
export type FakerGenerator = (typeof FAKER_GENERATORS)[number];

/** What a custom rule's function receives besides the value. */
export interface CustomMaskContext {
  /** A deterministic seed (HMAC of secret, domain and value), 32 bytes. */
  readonly seed: Uint8Array;
  readonly column: string;
}

/** A masking rule, normalised (`kind` discriminates). */
export type MaskRule =
  | { readonly kind: "keep" }
  | { readonly kind: "null" }
  | { readonly kind: "constant"; readonly value: string | null }
  | { readonly kind: "hash"; readonly domain?: string }
  | { readonly kind: "faker"; readonly generator: FakerGenerator; readonly domain?: string }
  | { readonly kind: "dateShift"; readonly maxDays: number; readonly domain?: string }
  | { readonly kind: "custom"; readonly fn: (value: string, ctx: CustomMaskContext) => string | null; readonly domain?: string };

/** A rule as users may write it. */
export type MaskRuleInput =
  | "keep"
  | "null"
  | "hash"
  | FakerGenerator
  | { keep: true }
  | { null: true }
  | { constant: string | null }
  | { hash: true; domain?: string }
  | { faker: FakerGenerator; domain?: string }
  | { dateShift: { maxDays: number }; domain?: string }
  | { custom: (value: string, ctx: CustomMaskContext) => string | null; domain?: string };

const DOMAIN = /^[A-Za-z0-9_.:-]{1,64}$/;
const domain = z.string().regex(DOMAIN, { error: 'expected a short name such as "email" (letters, digits, _ . : -)' }).optional();
const withDomain = (o: { domain?: string | undefined }): { domain?: string } => (o.domain === undefined ? {} : { domain: o.domain });
const fakerGenerator = z.enum(FAKER_GENERATORS, { error: `expected one of ${FAKER_GENERATORS.join(", ")}` });
const MAX_DAYS = "expected a whole number of days from 1 to 3650";
type CustomMask = (value: string, ctx: CustomMaskContext) => string | null;

/** A rule written as a string: "keep", "null", "hash" or a faker generator. */
const stringRule = z
  .string()
  .refine((s) => s === "keep" || s === "null" || s === "hash" || (FAKER_GENERATORS as readonly string[]).includes(s), {
    error: (iss) =>
      `unknown rule ${JSON.stringify(iss.input)}; use "keep", "null", "hash", a faker generator (${FAKER_GENERATORS.join(", ")}), or an object rule`,
  })
  .transform((s): MaskRule => (s === "keep" || s === "null" || s === "hash" ? { kind: s } : { kind: "faker", generator: s as FakerGenerator }));

/** A rule written as an object, by the one key that names its kind (domain beside it where a rule has one). */
const OBJECT_RULES = {
  keep: object({ keep: z.literal(true) }).transform((): MaskRule => ({ kind: "keep" })),
  null: object({ null: z.literal(true) }).transform((): MaskRule => ({ kind: "null" })),
  constant: object({ constant: z.string({ error: "expected a string (the value as Postgres text) or null" }).nullable() }).transform((o): MaskRule => ({
    kind: "constant",
    value: o.constant,
  })),
  hash: object({ hash: z.literal(true), domain }).transform((o): MaskRule => ({ kind: "hash", ...withDomain(o) })),
  faker: object({ faker: fakerGenerator, domain }).transform((o): MaskRule => ({ kind: "faker", generator: o.faker, ...withDomain(o) })),
  dateShift: object({
    dateShift: z.object(
      { maxDays: z.int({ error: MAX_DAYS }).min(1, { error: MAX_DAYS }).max(3650, { error: MAX_DAYS }) },
      { error: `expected { maxDays: <${MAX_DAYS.slice("expected ".length)}> }` },
    ),
    domain,
  }).transform((o): MaskRule => ({ kind: "dateShift", maxDays: o.dateShift.maxDays, ...withDomain(o) })),
  custom: object({
    custom: z.custom<CustomMask>((v) => typeof v === "function", { error: "expected a function (value, ctx) => string | null" }),
    domain,
  }).transform((o): MaskRule => ({ kind: "custom", fn: o.custom, ...withDomain(o) })),
} as const;
const RULE_KINDS = Object.keys(OBJECT_RULES) as Array<keyof typeof OBJECT_RULES>;

/** One masking rule as users write it (MaskRuleInput), normalised to a MaskRule. */
export const maskRuleSchema = z.custom<MaskRuleInput>().transform((value: unknown, ctx): MaskRule => {
  if (typeof value === "string") return parseInto(stringRule, value, ctx);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    ctx.issues.push({
      code: "custom",
      input: value,
      message: 'expected a rule: a string such as "keep" or "email", or an object such as { faker: "email", domain: "email" }',
    });
    return z.NEVER;
  }
  const kinds = RULE_KINDS.filter((k) => k in value);
  if (kinds.length !== 1) {
    ctx.issues.push({
      code: "custom",
      input: value,
      message: `a rule object needs exactly one of ${RULE_KINDS.join(", ")}; got ${kinds.length === 0 ? "none" : kinds.join(" and ")}`,
    });
    return z.NEVER;
  }
  return parseInto(OBJECT_RULES[kinds[0]!], value, ctx);
});

/** Parses one rule in the old calling style; problems are recorded with `path`. */
export const maskRule: Schema<MaskRule> = checker(maskRuleSchema);

/**
 * An allowance for the leak scan (masking.allow, keyed by a kept column):
 * values of that column that equal original values of a masked column by
 * chance (a region named like a city), each as a keyed hash of its normal
 * form, with the reason a person gave. Only common words and dates can be
 * allowed; an email, number or IBAN that equals an original is always a leak.
 */
export interface LeakAllowance {
  readonly reason: string;
  /** Keyed hashes (see allowances.ts), never the values. */
  readonly values: readonly string[];
}

const ALLOWANCE_HASH = /^[0-9a-f]{16}$/;
const REASON = "expected one line (3 to 500 characters) saying why these values are not personal data";
const VALUES = "expected a non-empty list of keyed hashes (16 hex digits each) as `airlock snapshot --init-rules` writes them";

/** One allowance as written in masking.allow; its values deduplicated. */
export const leakAllowanceSchema = z
  .custom<{ reason: string; values: string[] }>((v) => typeof v === "object" && v !== null && !Array.isArray(v), {
    error: 'expected { reason: "why these values are not personal data", values: ["<keyed hash>", …] } (`airlock snapshot --init-rules` writes it)',
  })
  .pipe(
    object(
      {
        reason: z
          .string({ error: REASON })
          .trim()
          .min(3, { error: REASON })
          .max(500, { error: REASON })
          .regex(/^[^\r\n]*$/, { error: REASON }),
        values: z
          .array(z.string().regex(ALLOWANCE_HASH, { error: "expected a keyed hash: 16 lower-case hex digits" }), { error: VALUES })
          .min(1, { error: VALUES })
          .transform((values) => [...new Set(values)]),
      },
      { unknownKeyNote: "an allowance has reason and values" },
    ),
  ) satisfies z.ZodType<LeakAllowance>;

/** Parses one allowance in the old calling style; problems are recorded with `path`. */
export const leakAllowance: Schema<LeakAllowance> = checker(leakAllowanceSchema);

const COLUMN_KEY = /^(?:[A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$/;
const KEY = 'expected "schema.table.column" or "table.column"';

/** A rule key: "schema.table.column" or "table.column" (schema public), normalised to the first. */
export const ruleKeySchema = z
  .string({ error: KEY })
  .regex(COLUMN_KEY, { error: KEY })
  .transform((k) => (k.split(".").length === 2 ? `public.${k}` : k));

/** Parses a rule key in the old calling style. */
export const ruleKey: Schema<string> = checker(ruleKeySchema);

/** A stable text form of a rule, for the manifest and the rules hash (custom functions by their source). */
export function describeRule(rule: MaskRule): string {
  switch (rule.kind) {
    case "keep":
    case "null":
      return rule.kind;
    case "constant":
      return `constant(${JSON.stringify(rule.value)})`;
    case "hash":
      return `hash(${rule.domain ?? ""})`;
    case "faker":
      return `faker.${rule.generator}(${rule.domain ?? ""})`;
    case "dateShift":
      return `dateShift(${rule.maxDays},${rule.domain ?? ""})`;
    case "custom":
      return `custom(${rule.domain ?? ""}):${rule.fn.toString()}`;
  }
}
