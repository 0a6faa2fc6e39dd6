/**
 * Masking rules as written in airlock.config.ts, and their validation.
 * A rule says what a production column becomes in the snapshot.
 */
import type { Problem, Schema } from "../config/schema.ts";

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

function domainOf(o: Record<string, unknown>, path: string, problems: Problem[]): { domain?: string } {
  if (o.domain === undefined) return {};
  if (typeof o.domain === "string" && DOMAIN.test(o.domain)) return { domain: o.domain };
  problems.push({ path: `${path}.domain`, message: "expected a short name such as \"email\" (letters, digits, _ . : -)" });
  return {};
}

/** Parses one rule; problems are recorded with `path`. */
export const maskRule: Schema<MaskRule> = (value, path, problems) => {
  if (typeof value === "string") {
    if (value === "keep" || value === "null") return { kind: value };
    if (value === "hash") return { kind: "hash" };
    if ((FAKER_GENERATORS as readonly string[]).includes(value)) return { kind: "faker", generator: value as FakerGenerator };
    return void problems.push({ path, message: `unknown rule ${JSON.stringify(value)}; use "keep", "null", "hash", a faker generator (${FAKER_GENERATORS.join(", ")}), or an object rule` });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return void problems.push({ path, message: "expected a rule: a string such as \"keep\" or \"email\", or an object such as { faker: \"email\", domain: \"email\" }" });
  }
  const o = value as Record<string, unknown>;
  const kinds = ["keep", "null", "constant", "hash", "faker", "dateShift", "custom"].filter((k) => k in o);
  if (kinds.length !== 1) return void problems.push({ path, message: `a rule object needs exactly one of keep, null, constant, hash, faker, dateShift, custom; got ${kinds.length === 0 ? "none" : kinds.join(" and ")}` });
  const kind = kinds[0]!;
  const allowed = new Set([kind, ...(kind === "keep" || kind === "null" || kind === "constant" ? [] : ["domain"])]);
  const before = problems.length;
  for (const k of Object.keys(o)) if (!allowed.has(k)) problems.push({ path: `${path}.${k}`, message: "unknown key" });
  const domain = domainOf(o, path, problems);
  let rule: MaskRule | undefined;
  switch (kind) {
    case "keep":
    case "null":
      rule = { kind };
      break;
    case "constant":
      if (typeof o.constant === "string" || o.constant === null) rule = { kind: "constant", value: o.constant };
      else problems.push({ path: `${path}.constant`, message: "expected a string (the value as Postgres text) or null" });
      break;
    case "hash":
      rule = { kind: "hash", ...domain };
      break;
    case "faker":
      if (typeof o.faker === "string" && (FAKER_GENERATORS as readonly string[]).includes(o.faker)) rule = { kind: "faker", generator: o.faker as FakerGenerator, ...domain };
      else problems.push({ path: `${path}.faker`, message: `expected one of ${FAKER_GENERATORS.join(", ")}` });
      break;
    case "dateShift": {
      const d = o.dateShift as { maxDays?: unknown } | null;
      const maxDays = typeof d === "object" && d !== null ? d.maxDays : undefined;
      if (typeof maxDays === "number" && Number.isInteger(maxDays) && maxDays >= 1 && maxDays <= 3650) rule = { kind: "dateShift", maxDays, ...domain };
      else problems.push({ path: `${path}.dateShift.maxDays`, message: "expected a whole number of days from 1 to 3650" });
      break;
    }
    case "custom":
      if (typeof o.custom === "function") rule = { kind: "custom", fn: o.custom as (v: string, c: CustomMaskContext) => string | null, ...domain };
      else problems.push({ path: `${path}.custom`, message: "expected a function (value, ctx) => string | null" });
      break;
  }
  return problems.length > before ? undefined : rule;
};

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

/** Parses one allowance; problems are recorded with `path`. */
export const leakAllowance: Schema<LeakAllowance> = (value, path, problems) => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return void problems.push({ path, message: 'expected { reason: "why these values are not personal data", values: ["<keyed hash>", …] } (`airlock snapshot --init-rules` writes it)' });
  }
  const o = value as Record<string, unknown>;
  const before = problems.length;
  for (const k of Object.keys(o)) if (k !== "reason" && k !== "values") problems.push({ path: `${path}.${k}`, message: "unknown key (an allowance has reason and values)" });
  const reason = typeof o.reason === "string" ? o.reason.trim() : "";
  if (reason.length < 3 || reason.length > 500 || /[\r\n]/.test(reason)) problems.push({ path: `${path}.reason`, message: "expected one line (3 to 500 characters) saying why these values are not personal data" });
  const values = Array.isArray(o.values) ? o.values : undefined;
  if (values === undefined || values.length === 0) problems.push({ path: `${path}.values`, message: "expected a non-empty list of keyed hashes (16 hex digits each) as `airlock snapshot --init-rules` writes them" });
  else values.forEach((v, i) => {
    if (typeof v !== "string" || !ALLOWANCE_HASH.test(v)) problems.push({ path: `${path}.values[${i}]`, message: "expected a keyed hash: 16 lower-case hex digits" });
  });
  return problems.length > before ? undefined : { reason, values: [...new Set(values as string[])] };
};

const COLUMN_KEY = /^(?:[A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$/;

/** Parses a rule key: "schema.table.column" or "table.column" (schema public). */
export const ruleKey: Schema<string> = (value, path, problems) => {
  if (typeof value === "string" && COLUMN_KEY.test(value)) return value.split(".").length === 2 ? `public.${value}` : value;
  return void problems.push({ path, message: "expected \"schema.table.column\" or \"table.column\"" });
};

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
