/**
 * PII detection: before a capture, every production column is classified by
 * its name and, for text-like columns, by a small sample of its values. A
 * suspected-PII column without a masking rule stops the capture, so a new
 * `contact` column full of emails cannot slip into a snapshot unmasked.
 *
 * Sampled values are unmasked production data: they are looked at here and
 * dropped. Reasons, errors and results carry counts and percentages only.
 */
import { isIP } from "node:net";
import { en } from "@faker-js/faker";
import type pg from "pg";
import { query, quoteIdent } from "../pg/connect.ts";
import { ownRows } from "../promote/rows.ts";
import type { MaskRule } from "./rules.ts";

/** A production column as the catalog describes it; the type decides which rules can fit. */
export interface PiiColumn {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
  /** The type as format_type prints it, e.g. "text", "character varying(80)", "date". */
  readonly type: string;
}

/** A column that looks like PII, why (counts only, never values), and a rule that would mask it. */
export interface PiiSuspicion {
  readonly column: PiiColumn;
  /** E.g. "name looks like an email column", "62% of 200 sampled values are email addresses". */
  readonly reasons: readonly string[];
  readonly suggested: MaskRule;
}

/** One classifier's verdict. */
interface Finding {
  reason: string;
  suggested: MaskRule;
}

// ---------------------------------------------------------------------------
// Types: a suggestion must fit the column (faker and hash produce text,
// dateShift needs a date), so the type decides what is suggested, or whether
// the name is evidence at all (an `email_verified` boolean is not an email).

type TypeClass = "text" | "date" | "number" | "ip" | "bytes" | "other";

const TEXT_TYPE = /^(?:text|citext|name|character varying|varchar|character|char|bpchar)(?:\s*\(\d+\))?$/;
const DATE_TYPE = /^(?:date|timestamp(?:\s*\(\d\))?(?: with(?:out)? time zone)?|timestamptz)$/;
const NUMBER_TYPE = /^(?:smallint|integer|int|int2|int4|int8|bigint|numeric|decimal|real|double precision|float4|float8|money)(?:\s*\([\d, ]+\))?$/;
const OTHER_BUILTIN =
  /^(?:boolean|bool|uuid|json|jsonb|xml|bytea|time(?:\s*\(\d\))?(?: with(?:out)? time zone)?|timetz|interval.*|macaddr8?|bit(?: varying)?(?:\s*\(\d+\))?|varbit|tsvector|tsquery|point|line|lseg|box|path|polygon|circle|oid|xid|cid|tid|reg\w+|\w*range|\w*multirange|pg_lsn|pg_snapshot|txid_snapshot|"char")$/;

/**
 * Classifies a format_type string. Unknown names are domains, enums or
 * extension types; they count as text because a domain over text holding
 * emails is exactly what must not slip through (a wrong guess is caught by
 * the rule-fit check at capture).
 */
function typeClass(type: string): TypeClass {
  const t = type.trim().toLowerCase();
  if (t.endsWith("]")) return "other";
  if (TEXT_TYPE.test(t)) return "text";
  if (DATE_TYPE.test(t)) return "date";
  if (NUMBER_TYPE.test(t)) return "number";
  if (t === "inet" || t === "cidr") return "ip";
  if (t === "bytea") return "bytes";
  if (OTHER_BUILTIN.test(t)) return "other";
  return "text";
}

// ---------------------------------------------------------------------------
// Names.

/** Splits snake_case, camelCase and digits into lowercase words: "addressLine1" → address, line, 1. */
function words(name: string): string[] {
  return name
    .replace(/([a-z])([A-Z])/g, "$1_$2")
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1_$2")
    .replace(/([A-Za-z])(\d)/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w !== "");
}

/** Whether consecutive words spell `phrase` ("tax_id" matches tax_id, taxId and taxid). */
function hasPhrase(ws: readonly string[], phrase: string): boolean {
  const target = phrase.replace(/_/g, "");
  for (let i = 0; i < ws.length; i++) {
    let joined = "";
    for (let j = i; j < ws.length && joined.length < target.length; j++) {
      joined += ws[j];
      if (joined === target) return true;
    }
  }
  return false;
}

/** Whether the name ends with `phrase`, so "first_name_length" is not a first name. */
function endsWithPhrase(ws: readonly string[], phrase: string): boolean {
  const target = phrase.replace(/_/g, "");
  let joined = "";
  for (let i = ws.length - 1; i >= 0 && joined.length < target.length; i--) {
    joined = ws[i] + joined;
    if (joined === target) return true;
  }
  return false;
}

const anyPhrase = (ws: readonly string[], phrases: readonly string[]) => phrases.some((p) => hasPhrase(ws, p));
const anyEnding = (ws: readonly string[], phrases: readonly string[]) => phrases.some((p) => endsWithPhrase(ws, p));

/**
 * Last words that make a column about a PII field rather than the field
 * itself: `email_status`, `phone_verified`, `address_id`, `ip_country`.
 */
const ABOUT = new Set([
  "type", "kind", "status", "state", "verified", "confirmed", "validated", "count", "id", "ids", "uuid", "at", "on", "date",
  "enabled", "disabled", "flag", "format", "template", "version", "length", "len", "provider", "source", "sent", "bounced",
  "bounce", "policy", "preference", "preferences", "opt", "in", "out", "consent", "subscribed", "frequency", "domain",
  "server", "host", "port", "subject", "body", "html", "code", "country", "region", "province", "county", "city", "town",
  "zip", "postcode", "postal", "lat", "latitude", "lng", "lon", "longitude", "geo", "visibility", "visible", "public",
  "private", "label", "name", "url", "uri", "path", "file", "size", "model", "brand", "os", "app", "platform", "device",
  "carrier", "make", "issuer", "issued", "expires", "expiry", "expiration", "expired", "image", "photo", "scan", "changed",
  "updated", "created", "deleted", "required", "attempts", "used", "limit", "total", "remaining", "usage",
]);

/** Last words that say the value is a digest of a PII field: still linkable, so hash it rather than fake it. */
const DIGEST = new Set(["hash", "hashed", "sha", "sha1", "sha256", "md5", "hmac", "fingerprint"]);

/** A table's last word, singular, as a person noun: `app_users` → user. */
function tableNoun(table: string): string {
  const last = words(table).at(-1) ?? "";
  if (last === "people" || last === "persons") return "person";
  if (last.endsWith("ies")) return `${last.slice(0, -3)}y`;
  if (last.endsWith("s") && !last.endsWith("ss")) return last.slice(0, -1);
  return last;
}

/** Tables whose rows are people, where a plain `name` is a person's name. */
const PEOPLE_TABLES = new Set([
  "user", "customer", "guest", "person", "employee", "staff", "contact", "member", "patient", "student", "teacher",
  "author", "passenger", "traveler", "traveller", "applicant", "candidate", "volunteer", "donor", "subscriber",
  "resident", "driver", "rider", "attendee", "participant", "visitor", "player", "doctor", "physician", "nurse",
  "recipient", "beneficiary", "profile", "cardholder", "lead", "prospect", "parent", "guardian", "child", "admin",
  "administrator", "worker", "contractor", "freelancer", "individual", "citizen", "voter", "pupil", "learner",
  "instructor", "buyer", "shopper", "consumer", "spouse", "dependent", "policyholder", "claimant", "borrower", "debtor",
  "guarantor", "alumnus", "alumni",
]);

/** `<role>_name` columns that name a person in any table: `contact_name`, `card_holder_name`. */
const PERSON_ROLES = new Set([
  "contact", "customer", "patient", "guest", "employee", "member", "recipient", "sender", "holder", "cardholder",
  "beneficiary", "parent", "guardian", "spouse", "owner", "person", "passenger", "student", "teacher", "billing",
  "shipping", "kin", "signer", "signatory", "applicant", "candidate", "driver", "traveler", "traveller", "buyer",
  "addressee", "full", "real", "legal", "maiden", "emergency",
]);

/** Words that make an "address" something other than where a person lives. */
const NOT_POSTAL = new Set([
  "email", "mail", "e", "ip", "ipv", "mac", "wallet", "contract", "web", "url", "uri", "server", "host", "remote",
  "bitcoin", "btc", "eth", "ethereum", "crypto", "memory", "base", "network", "net", "link", "broadcast", "gateway",
  "bind", "listen", "hardware", "bluetooth", "ble", "smtp", "sip", "multicast", "socket", "endpoint", "onion", "deposit",
  "token",
]);

const SECRET_WORDS = new Set(["password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "tokens", "apikey", "otp", "totp", "pin", "credential", "credentials", "salt"]);
const SECRET_PHRASES = ["api_key", "access_key", "secret_key", "private_key", "signing_key", "encryption_key", "recovery_code", "backup_code", "session_key"];
/** Numbers named like these are one-time codes and PINs; `max_tokens` and `tokens_used` are counts. */
const NUMERIC_SECRETS = new Set(["pin", "otp", "totp"]);
const SECRET_ABOUT = new Set([...ABOUT].filter((w) => w !== "code" && w !== "hash"));

const NATIONAL_WORDS = new Set(["ssn", "nino", "passport", "aadhaar", "aadhar", "pesel", "bsn", "cpf", "dni", "nie", "nif", "curp", "mrn", "tin"]);
const NATIONAL_PHRASES = [
  "social_security", "social_insurance", "national_id", "national_identity", "national_insurance", "national_number", "tax_id", "taxpayer_id",
  "tax_number", "tax_identification", "drivers_license", "driver_license", "drivers_licence", "driver_licence",
  "driving_license", "driving_licence", "id_number", "id_no", "id_card", "identity_number", "identity_card",
  "identity_document", "personal_number", "personal_id", "personnummer", "medicare_number", "medical_record_number",
  "nhs_number", "insurance_number", "health_insurance_id",
];

const CARD_PHRASES = ["card_number", "card_no", "card_num", "card_nr", "cardnumber", "cc_number", "cc_no", "cc_num", "ccnum", "credit_card", "debit_card", "primary_account_number"];
/** Card fields that are not the number: PCI DSS lets first six and last four be shown, and brand/expiry identify no one. */
const CARD_NOT_NUMBER = new Set(["last", "first", "bin", "brand", "type", "kind", "exp", "expiry", "expires", "expiration", "month", "year", "country", "issuer", "network", "funding", "holder", "cardholder", "name", "count", "id", "status", "provider", "token"]);

/** Which rule fits, or undefined when nothing sensible does (the name is then no evidence). */
function byType(cls: TypeClass, fits: Partial<Record<TypeClass, MaskRule>>): MaskRule | undefined {
  return fits[cls];
}

const EMAIL: MaskRule = { kind: "faker", generator: "email", domain: "email" };
const faker = (generator: "phone" | "fullName" | "firstName" | "lastName" | "streetAddress" | "city" | "postcode" | "iban" | "cardNumber" | "ipv4" | "username" | "text"): MaskRule => ({ kind: "faker", generator });
const HASH: MaskRule = { kind: "hash" };
const NULL: MaskRule = { kind: "null" };
/** An RFC 5737 documentation address: fits inet and cidr, NOT NULL and all. */
const DOC_IP: MaskRule = { kind: "constant", value: "192.0.2.1" };

function found(reason: string, suggested: MaskRule | undefined): Finding | undefined {
  return suggested === undefined ? undefined : { reason, suggested };
}

/** A text version of a digest-suffixed name (`email_hash`) is still linkable: hash it. */
function plainOrDigest(ws: readonly string[], cls: TypeClass, what: string, plain: MaskRule): Finding | undefined {
  const last = ws.at(-1) ?? "";
  if (DIGEST.has(last)) return found(`name looks like a hashed ${what} column`, byType(cls, { text: HASH }));
  return found(`name looks like ${/^[aeiou]/i.test(what) ? "an" : "a"} ${what} column`, byType(cls, { text: plain }));
}

/** By column name only. */
export function classifyByName(table: string, column: string, type: string): { reason: string; suggested: MaskRule } | undefined {
  const ws = words(column);
  const last = ws.at(-1) ?? "";
  const cls = typeClass(type);
  const about = ABOUT.has(last);
  const has = (w: string) => ws.includes(w);
  const numberNote = " (stored as a number, so null: faker and hash produce text)";

  // Secrets first, so `email_verification_token` is a token, not an email.
  if ((ws.some((w) => SECRET_WORDS.has(w)) || anyPhrase(ws, SECRET_PHRASES)) && !SECRET_ABOUT.has(last)) {
    if (cls === "text" || cls === "bytes") return { reason: "name looks like a password, token or other secret", suggested: NULL };
    if (cls === "number" && ws.some((w) => NUMERIC_SECRETS.has(w))) return { reason: "name looks like a PIN or one-time code", suggested: NULL };
  }

  // Cards before bank accounts: a PAN is a "primary account number".
  if (anyPhrase(ws, CARD_PHRASES) || ["pan", "card_pan", "cc_pan"].includes(ws.join("_"))) {
    if (!ws.some((w) => CARD_NOT_NUMBER.has(w)) || DIGEST.has(last)) {
      if (cls === "number") return { reason: `name looks like a payment card number column${numberNote}`, suggested: NULL };
      const f = plainOrDigest(ws, cls, "payment card number", faker("cardNumber"));
      if (f !== undefined) return f;
    }
  }

  if ((has("iban") || has("bban")) && !about) return found("name looks like an IBAN column", byType(cls, { text: faker("iban"), number: NULL }));
  if (anyPhrase(ws, ["account_number", "account_no", "account_num", "account_nr", "acct_number", "acct_no", "acct_num", "acc_number", "acc_no", "bank_account"]) && !about) {
    if (cls === "number") return { reason: `name looks like a bank account number column${numberNote}`, suggested: NULL };
    return found("name looks like a bank account number column", byType(cls, { text: HASH }));
  }

  // Even the last four digits of an SSN are used to verify identity, so no last-4 exemption here.
  if ((ws.some((w) => NATIONAL_WORDS.has(w)) || anyPhrase(ws, NATIONAL_PHRASES)) && !(about && last !== "id")) {
    if (cls === "number") return { reason: `name looks like a national id, tax id or passport number column${numberNote}`, suggested: NULL };
    return found("name looks like a national id, tax id or passport number column", byType(cls, { text: HASH }));
  }

  if (anyEnding(ws, ["dob", "d_o_b", "birth_date", "birthdate", "date_of_birth", "birthday", "birth_day", "birth_dt", "bday", "born_on", "born_at"])) {
    if (cls === "date") return { reason: "name looks like a date of birth column", suggested: { kind: "dateShift", maxDays: 30 } };
    return found("name looks like a date of birth column (stored as text, so hash: dateShift needs a date)", byType(cls, { text: HASH }));
  }
  if (anyEnding(ws, ["birth_place", "birthplace", "place_of_birth", "birth_city", "city_of_birth"])) return found("name looks like a place of birth column", byType(cls, { text: faker("city") }));

  if ((ws.some((w) => w.includes("email")) || hasPhrase(ws, "e_mail") || has("mail")) && (!about || DIGEST.has(last))) {
    return plainOrDigest(ws, cls, "email", EMAIL);
  }

  if ((has("ip") || has("ipv") || has("ipaddress") || has("ipaddr") || anyPhrase(ws, ["remote_addr", "forwarded_for", "client_addr"])) && !about) {
    return found("name looks like an IP address column", byType(cls, { text: faker("ipv4"), ip: DOC_IP }));
  }

  const phoneWord = ["mobile", "cell", "tel", "fax"].find((w) => has(w));
  const phoneLike =
    ws.some((w) => w.startsWith("phone") || w === "telephone" || w === "cellphone") || has("msisdn") || (phoneWord !== undefined && (last === phoneWord || ["number", "no", "num", "nr"].includes(last)));
  if (phoneLike && (!about || DIGEST.has(last))) {
    if (cls === "number") return { reason: `name looks like a phone number column${numberNote}`, suggested: NULL };
    return plainOrDigest(ws, cls, "phone number", faker("phone"));
  }

  if (anyEnding(ws, ["username", "user_name", "login", "login_name", "screen_name", "screenname", "nickname"])) return found("name looks like a username column", byType(cls, { text: faker("username") }));

  if (anyEnding(ws, ["first_name", "firstname", "given_name", "givenname", "forename", "fore_name", "fname", "middle_name", "middlename", "preferred_name"])) {
    return found("name looks like a first name column", byType(cls, { text: faker("firstName") }));
  }
  if (anyEnding(ws, ["last_name", "lastname", "surname", "family_name", "familyname", "lname", "maiden_name"])) {
    return found("name looks like a last name column", byType(cls, { text: faker("lastName") }));
  }
  const person = PEOPLE_TABLES.has(tableNoun(table));
  const beforeName = ws.at(-2);
  if (
    anyEnding(ws, ["full_name", "fullname", "cardholder", "addressee"]) ||
    (last === "name" && beforeName !== undefined && PERSON_ROLES.has(beforeName) && !(beforeName === "legal" && !person))
  ) {
    return found("name looks like a person's name column", byType(cls, { text: faker("fullName") }));
  }
  if (person && (ws.join("_") === "name" || ws.join("_") === "display_name")) {
    return found(`name looks like a person's name in a table of ${tableNoun(table)} rows`, byType(cls, { text: faker("fullName") }));
  }

  if ((has("zip") || has("zipcode") || has("postcode") || has("plz") || hasPhrase(ws, "postal_code") || hasPhrase(ws, "post_code")) && (!about || last === "code" || last === "postcode" || last === "zip")) {
    return found("name looks like a postcode column", byType(cls, { text: faker("postcode") }));
  }
  if ((has("city") || has("town")) && (last === "city" || last === "town" || last === "name")) {
    return found('name looks like a city column (borderline: a city alone rarely identifies anyone; "keep" it if it is not about a person)', byType(cls, { text: faker("city") }));
  }
  if ((has("address") || has("addr") || has("street") || has("streetaddress")) && !ws.some((w) => NOT_POSTAL.has(w)) && (!about || (last === "name" && has("street")))) {
    return found("name looks like a street address column", byType(cls, { text: faker("streetAddress") }));
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Values.

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
  ...["street", "st", "avenue", "ave", "av", "road", "rd", "lane", "ln", "drive", "dr", "boulevard", "blvd", "court", "ct", "place", "pl", "square", "sq", "terrace", "ter", "terr", "parkway", "pkwy", "highway", "hwy", "crescent", "cres", "close", "cl", "way", "gardens", "gdns", "mews", "row", "walk", "hill", "green", "grove", "circle", "cir", "trail", "trl", "alley", "aly", "plaza", "quay", "wharf"],
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

// ---------------------------------------------------------------------------
// Detection.

/**
 * Which evidence picks the rule: values say what a column holds, so they win,
 * except that a generic "text" loses to any specific name, and a name that
 * asks for null, hash, dateShift or a constant (secrets, ids, birth dates, inet)
 * is stricter than any fake (an SSN's values look like phone numbers).
 */
function combine(byName: Finding | undefined, byValues: Finding | undefined): MaskRule | undefined {
  if (byValues === undefined) return byName?.suggested;
  if (byName === undefined) return byValues.suggested;
  if (byName.suggested.kind !== "faker") return byName.suggested;
  if (byValues.suggested.kind === "faker" && byValues.suggested.generator === "text") return byName.suggested;
  return byValues.suggested;
}

function compareColumns(a: PiiColumn, b: PiiColumn): number {
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.schema, b.schema) || cmp(a.table, b.table) || cmp(a.column, b.column);
}

/** Longest prefix of a value that is sampled: enough for every pattern, and a 10 MB document is not fetched 200 times. */
const SAMPLE_CHARS = 1000;

/** Samples each candidate column (text-like columns for value checks; every column for names) through the given client (already inside a read-only transaction; do not begin/commit) and returns the suspicions, sorted by schema.table.column. */
export async function detectPii(client: pg.ClientBase, columns: readonly PiiColumn[], options?: { sampleSize?: number }): Promise<PiiSuspicion[]> {
  const sampleSize = options?.sampleSize ?? 200;
  const out: PiiSuspicion[] = [];
  for (const column of [...columns].sort(compareColumns)) {
    const byName = classifyByName(column.table, column.column, column.type);
    let byValues: Finding | undefined;
    if (typeClass(column.type) === "text") {
      const col = quoteIdent(column.column);
      // No ORDER BY and a LIMIT: the scan stops after the first rows it meets, cheap on any table size.
      // The table's own rows (captured tables are plain, partitions as their leaves): a child's are sampled as its own.
      const sql = `SELECT left(${col}::text, ${SAMPLE_CHARS}) AS v FROM ${ownRows(column.schema, column.table, false)} WHERE ${col} IS NOT NULL LIMIT $1`;
      const result = await query<{ v: string }>(client, sql, [sampleSize]);
      byValues = classifyByValues(result.rows.map((r) => r.v), column.type);
    }
    const suggested = combine(byName, byValues);
    if (suggested === undefined) continue;
    const reasons = [byName?.reason, byValues?.reason].filter((r): r is string => r !== undefined);
    out.push({ column, reasons, suggested });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Rendering.

/** A rule in the form users write it (MaskRuleInput), as TypeScript source. */
export function ruleSource(rule: MaskRule): string {
  const domain = "domain" in rule && rule.domain !== undefined ? `, domain: ${JSON.stringify(rule.domain)}` : "";
  switch (rule.kind) {
    case "keep":
    case "null":
      return JSON.stringify(rule.kind);
    case "constant":
      return `{ constant: ${JSON.stringify(rule.value)} }`;
    case "hash":
      return domain === "" ? '"hash"' : `{ hash: true${domain} }`;
    case "faker":
      return domain === "" ? JSON.stringify(rule.generator) : `{ faker: ${JSON.stringify(rule.generator)}${domain} }`;
    case "dateShift":
      return `{ dateShift: { maxDays: ${rule.maxDays} }${domain} }`;
    case "custom":
      return `{ custom: ${rule.fn.toString()}${domain} }`;
  }
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** Renders suggestions as a TypeScript `masking.rules` block for airlock.config.ts (used by `airlock snapshot --init-rules`), one line per column with the reason as a comment. */
export function rulesBlock(suspicions: readonly PiiSuspicion[]): string {
  const lines = ["// Suggested by `airlock snapshot --init-rules`: review each line, then put this block inside `masking` in airlock.config.ts.", "rules: {"];
  for (const s of suspicions) {
    const { schema, table, column } = s.column;
    const key = `${schema}.${table}.${column}`;
    const comment = s.reasons.join("; ").replace(/[\r\n]+/g, " ");
    const line = `${JSON.stringify(key)}: ${ruleSource(s.suggested)}, // ${comment}`;
    // Rule keys are plain identifiers; a name that needs quoting cannot be written as one yet, so it stays visible but inert.
    const expressible = [schema, table, column].every((p) => IDENT.test(p));
    lines.push(expressible ? `  ${line}` : `  // ${line} (cannot be a rule key: the name needs quoting)`);
  }
  lines.push("},");
  return `${lines.join("\n")}\n`;
}
