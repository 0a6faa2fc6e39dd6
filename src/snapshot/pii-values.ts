/**
 * PII by sampled values: validators for what a whole value is (an email, a
 * mod-97 IBAN, a Luhn-valid card number, an IP, a phone number, a person's
 * name, a street address) and for PII mentioned inside free text, and the
 * share of a sample at which a column counts as holding it.
 */
import { isIP } from "node:net";
import { en } from "@faker-js/faker";
import { EMAIL, faker, typeClass } from "./pii-column-type.ts";
import type { MaskRule } from "../config/masking-rules.ts";

const EMAIL_VALUE = /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$/;
const EMAIL_INSIDE = /[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}/;
const DIGIT_RUN_INSIDE = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])/g;
const PHONE_VALUE = /^(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){1,4}(?:\s*(?:x|ext\.?)\s*\d{1,5})?$/i;
const E164 = /^\+\d{7,15}$/;
const DATE_LIKE = /^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$/;
const DECIMAL = /^-?\d+\.\d+$/;
const ZIP_PLUS_4 = /^\d{5}-\d{4}$/;
const IBAN_VALUE = /^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/;
const CARD_VALUE = /^\d(?:[ -]?\d){12,18}$/;
const NAME_WORD = /^\p{Lu}[\p{L}'’-]*\p{Ll}[\p{L}'’-]*$/u;
const INITIAL = /^\p{Lu}\.?$/u;
const HOUSE_NUMBER = /^\d{1,6}[A-Za-z]?(?:[-/]\d{1,6}[A-Za-z]?)?,?$/;
const GERMAN_STREET = /^[\p{L}.' -]*(?:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm)\s+\d{1,5}[a-z]?\b/iu;

/** First names from faker's en locale, built once: a capitalised pair starting with one reads as a person. */
const FIRST_NAMES: ReadonlySet<string> = (() => {
  const fn = en.person?.first_name;
  return new Set([...(fn?.generic ?? []), ...(fn?.female ?? []), ...(fn?.male ?? [])]);
})();

/** Street-type words, lowercase: faker's en suffixes plus the abbreviations real addresses use. */
const STREET_SUFFIXES: ReadonlySet<string> = new Set([
  ...(en.location?.street_suffix ?? []).map((s) => s.toLowerCase()),
  ...[
    "street",
    "st",
    "avenue",
    "ave",
    "av",
    "road",
    "rd",
    "lane",
    "ln",
    "drive",
    "dr",
    "boulevard",
    "blvd",
    "court",
    "ct",
    "place",
    "pl",
    "square",
    "sq",
    "terrace",
    "ter",
    "terr",
    "parkway",
    "pkwy",
    "highway",
    "hwy",
    "crescent",
    "cres",
    "close",
    "cl",
    "way",
    "gardens",
    "gdns",
    "mews",
    "row",
    "walk",
    "hill",
    "green",
    "grove",
    "circle",
    "cir",
    "trail",
    "trl",
    "alley",
    "aly",
    "plaza",
    "quay",
    "wharf",
  ],
]);

/** The Luhn check every payment card number passes (and 90% of random digit strings fail). */
function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return sum % 10 === 0;
}

/** Card numbers: 13–19 digits, a payment-network first digit (2–6), not one repeated digit, Luhn-valid. */
function isCardDigits(digits: string): boolean {
  return digits.length >= 13 && digits.length <= 19 && /^[2-6]/.test(digits) && !/^(\d)\1*$/.test(digits) && luhnValid(digits);
}

/** ISO 13616: move the first four characters to the end, letters to numbers, and the result mod 97 is 1. */
function ibanValid(compact: string): boolean {
  if (!IBAN_VALUE.test(compact)) return false;
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let rest = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const n = code >= 65 ? String(code - 55) : ch;
    for (const d of n) rest = (rest * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return rest === 1;
}

function isPhone(v: string): boolean {
  if (E164.test(v)) return true;
  if (!PHONE_VALUE.test(v) || DATE_LIKE.test(v) || DECIMAL.test(v) || ZIP_PLUS_4.test(v)) return false;
  const main = v.replace(/\s*(?:x|ext\.?)\s*\d{1,5}$/i, "");
  const digits = main.replace(/\D/g, "").length;
  return digits >= 7 && digits <= 15;
}

function isPersonName(v: string): boolean {
  const parts = v.split(/\s+/);
  if (parts.length < 2 || parts.length > 3) return false;
  const [first, ...rest] = parts;
  if (first === undefined || !FIRST_NAMES.has(first)) return false;
  const lastPart = rest.at(-1);
  if (lastPart === undefined || !NAME_WORD.test(lastPart)) return false;
  return rest.slice(0, -1).every((w) => NAME_WORD.test(w) || INITIAL.test(w));
}

function isStreetAddress(v: string): boolean {
  if (GERMAN_STREET.test(v)) return true;
  const parts = v.split(/\s+/).slice(0, 7);
  if (!HOUSE_NUMBER.test(parts[0] ?? "")) return false;
  // A number, at least one name word, then a street-type word: "12 Baker Street", "350 Fifth Ave., Suite 3".
  for (let i = 2; i < parts.length; i++) {
    const word = (parts[i] ?? "").replace(/[.,;]+$/, "").toLowerCase();
    if (STREET_SUFFIXES.has(word)) return parts.slice(1, i).every((w) => /^[\p{L}\d'’.-]+$/u.test(w) && /\p{L}/u.test(w));
  }
  return false;
}

function isIp(v: string): boolean {
  return isIP(v.replace(/\/\d{1,3}$/, "")) !== 0;
}

type ValueKind = "email" | "iban" | "card" | "ip" | "phone" | "name" | "address";

const KIND_LABEL: Readonly<Record<ValueKind, string>> = {
  email: "email addresses",
  iban: "IBANs",
  card: "payment card numbers",
  ip: "IP addresses",
  phone: "phone numbers",
  name: "person names",
  address: "street addresses",
};

const KIND_RULE: Readonly<Record<ValueKind, MaskRule>> = {
  email: EMAIL,
  iban: faker("iban"),
  card: faker("cardNumber"),
  ip: faker("ipv4"),
  phone: faker("phone"),
  name: faker("fullName"),
  address: faker("streetAddress"),
};

/** What a whole value is, most specific first (a card number would otherwise also read as digits of a phone). */
function kindOf(raw: string): ValueKind | undefined {
  const v = raw.trim();
  if (v === "" || v.length > 200) return undefined;
  if (EMAIL_VALUE.test(v)) return "email";
  const compact = v.replace(/\s+/g, "").toUpperCase();
  if (ibanValid(compact)) return "iban";
  if (CARD_VALUE.test(v) && isCardDigits(v.replace(/[ -]/g, ""))) return "card";
  if (isIp(v)) return "ip";
  if (isPhone(v)) return "phone";
  if (isPersonName(v)) return "name";
  if (isStreetAddress(v)) return "address";
  return undefined;
}

/** Free text that mentions PII somewhere: an email address or a Luhn-valid card number. */
function mentionsOf(v: string): Array<"email" | "card"> {
  const out: Array<"email" | "card"> = [];
  if (EMAIL_INSIDE.test(v)) out.push("email");
  for (const m of v.matchAll(DIGIT_RUN_INSIDE)) {
    if (isCardDigits(m[0].replace(/[ -]/g, ""))) {
      out.push("card");
      break;
    }
  }
  return out;
}

/** Share of sampled values at which a column counts as PII: a mostly-PII column with some junk still leaks. */
const THRESHOLD = 0.3;

function percent(count: number, total: number): string {
  return `${Math.round((count / total) * 100)}% of ${total} sampled values`;
}

/** By sampled non-null text values. */
export function classifyByValues(values: readonly string[], type: string): { reason: string; suggested: MaskRule } | undefined {
  if (values.length === 0 || typeClass(type) !== "text") return undefined;
  const counts = new Map<ValueKind, number>();
  const mentioned = new Set<string>();
  let pii = 0;
  for (const v of values) {
    const kind = kindOf(v);
    if (kind !== undefined) {
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
      mentioned.add(KIND_LABEL[kind]);
      pii++;
      continue;
    }
    const mentions = mentionsOf(v);
    if (mentions.length > 0) {
      for (const m of mentions) mentioned.add(KIND_LABEL[m]);
      pii++;
    }
  }
  let best: ValueKind | undefined;
  let bestCount = 0;
  for (const [kind, count] of counts) {
    if (count > bestCount) [best, bestCount] = [kind, count];
  }
  if (best !== undefined && bestCount / values.length >= THRESHOLD) {
    return { reason: `${percent(bestCount, values.length)} are ${KIND_LABEL[best]}`, suggested: KIND_RULE[best] };
  }
  // Free text, or a mix (some emails, some phones): no single generator fits, so replace the text.
  if (pii / values.length >= THRESHOLD) {
    return { reason: `${percent(pii, values.length)} are or contain ${[...mentioned].sort().join(" or ")}`, suggested: faker("text") };
  }
  return undefined;
}
