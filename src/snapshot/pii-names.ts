/**
 * PII by column name: words of the name (snake_case, camelCase, digits) are
 * matched against what PII columns are called, with the last word deciding
 * whether a column is the field itself (`email`) or about it (`email_status`),
 * and the column's type deciding which rule fits or whether the name counts.
 */
import { type Finding, type TypeClass, DOC_IP, EMAIL, HASH, NULL, byType, faker, found, typeClass } from "./pii-column-type.ts";
import type { MaskRule } from "../config/masking-rules.ts";

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
// prettier-ignore
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
// prettier-ignore
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
// prettier-ignore
const PERSON_ROLES = new Set([
  "contact", "customer", "patient", "guest", "employee", "member", "recipient", "sender", "holder", "cardholder",
  "beneficiary", "parent", "guardian", "spouse", "owner", "person", "passenger", "student", "teacher", "billing",
  "shipping", "kin", "signer", "signatory", "applicant", "candidate", "driver", "traveler", "traveller", "buyer",
  "addressee", "full", "real", "legal", "maiden", "emergency",
]);

/** Words that make an "address" something other than where a person lives. */
// prettier-ignore
const NOT_POSTAL = new Set([
  "email", "mail", "e", "ip", "ipv", "mac", "wallet", "contract", "web", "url", "uri", "server", "host", "remote",
  "bitcoin", "btc", "eth", "ethereum", "crypto", "memory", "base", "network", "net", "link", "broadcast", "gateway",
  "bind", "listen", "hardware", "bluetooth", "ble", "smtp", "sip", "multicast", "socket", "endpoint", "onion", "deposit",
  "token",
]);

const SECRET_WORDS = new Set([
  "password",
  "passwd",
  "pwd",
  "passphrase",
  "secret",
  "secrets",
  "token",
  "tokens",
  "apikey",
  "otp",
  "totp",
  "pin",
  "credential",
  "credentials",
  "salt",
]);
const SECRET_PHRASES = ["api_key", "access_key", "secret_key", "private_key", "signing_key", "encryption_key", "recovery_code", "backup_code", "session_key"];
/** Numbers named like these are one-time codes and PINs; `max_tokens` and `tokens_used` are counts. */
const NUMERIC_SECRETS = new Set(["pin", "otp", "totp"]);
const SECRET_ABOUT = new Set([...ABOUT].filter((w) => w !== "code" && w !== "hash"));

const NATIONAL_WORDS = new Set(["ssn", "nino", "passport", "aadhaar", "aadhar", "pesel", "bsn", "cpf", "dni", "nie", "nif", "curp", "mrn", "tin"]);
// prettier-ignore
const NATIONAL_PHRASES = [
  "social_security", "social_insurance", "national_id", "national_identity", "national_insurance", "national_number", "tax_id", "taxpayer_id",
  "tax_number", "tax_identification", "drivers_license", "driver_license", "drivers_licence", "driver_licence",
  "driving_license", "driving_licence", "id_number", "id_no", "id_card", "identity_number", "identity_card",
  "identity_document", "personal_number", "personal_id", "personnummer", "medicare_number", "medical_record_number",
  "nhs_number", "insurance_number", "health_insurance_id",
];

const CARD_PHRASES = [
  "card_number",
  "card_no",
  "card_num",
  "card_nr",
  "cardnumber",
  "cc_number",
  "cc_no",
  "cc_num",
  "ccnum",
  "credit_card",
  "debit_card",
  "primary_account_number",
];
/** Card fields that are not the number: PCI DSS lets first six and last four be shown, and brand/expiry identify no one. */
const CARD_NOT_NUMBER = new Set([
  "last",
  "first",
  "bin",
  "brand",
  "type",
  "kind",
  "exp",
  "expiry",
  "expires",
  "expiration",
  "month",
  "year",
  "country",
  "issuer",
  "network",
  "funding",
  "holder",
  "cardholder",
  "name",
  "count",
  "id",
  "status",
  "provider",
  "token",
]);

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
  if (
    anyPhrase(ws, [
      "account_number",
      "account_no",
      "account_num",
      "account_nr",
      "acct_number",
      "acct_no",
      "acct_num",
      "acc_number",
      "acc_no",
      "bank_account",
    ]) &&
    !about
  ) {
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
  if (anyEnding(ws, ["birth_place", "birthplace", "place_of_birth", "birth_city", "city_of_birth"]))
    return found("name looks like a place of birth column", byType(cls, { text: faker("city") }));

  if ((ws.some((w) => w.includes("email")) || hasPhrase(ws, "e_mail") || has("mail")) && (!about || DIGEST.has(last))) {
    return plainOrDigest(ws, cls, "email", EMAIL);
  }

  if ((has("ip") || has("ipv") || has("ipaddress") || has("ipaddr") || anyPhrase(ws, ["remote_addr", "forwarded_for", "client_addr"])) && !about) {
    return found("name looks like an IP address column", byType(cls, { text: faker("ipv4"), ip: DOC_IP }));
  }

  const phoneWord = ["mobile", "cell", "tel", "fax"].find((w) => has(w));
  const phoneLike =
    ws.some((w) => w.startsWith("phone") || w === "telephone" || w === "cellphone") ||
    has("msisdn") ||
    (phoneWord !== undefined && (last === phoneWord || ["number", "no", "num", "nr"].includes(last)));
  if (phoneLike && (!about || DIGEST.has(last))) {
    if (cls === "number") return { reason: `name looks like a phone number column${numberNote}`, suggested: NULL };
    return plainOrDigest(ws, cls, "phone number", faker("phone"));
  }

  if (anyEnding(ws, ["username", "user_name", "login", "login_name", "screen_name", "screenname", "nickname"]))
    return found("name looks like a username column", byType(cls, { text: faker("username") }));

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

  if (
    (has("zip") || has("zipcode") || has("postcode") || has("plz") || hasPhrase(ws, "postal_code") || hasPhrase(ws, "post_code")) &&
    (!about || last === "code" || last === "postcode" || last === "zip")
  ) {
    return found("name looks like a postcode column", byType(cls, { text: faker("postcode") }));
  }
  if ((has("city") || has("town")) && (last === "city" || last === "town" || last === "name")) {
    return found(
      'name looks like a city column (borderline: a city alone rarely identifies anyone; "keep" it if it is not about a person)',
      byType(cls, { text: faker("city") }),
    );
  }
  if (
    (has("address") || has("addr") || has("street") || has("streetaddress")) &&
    !ws.some((w) => NOT_POSTAL.has(w)) &&
    (!about || (last === "name" && has("street")))
  ) {
    return found("name looks like a street address column", byType(cls, { text: faker("streetAddress") }));
  }
  return undefined;
}
