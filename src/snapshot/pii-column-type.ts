/**
 * What a PII suggestion must fit: a column's type class (faker and hash
 * produce text, dateShift needs a date), the rules the classifiers suggest,
 * and one classifier's verdict. Shared by the name and the value classifiers.
 */
import type { MaskRule } from "../config/masking-rules.ts";

/** One classifier's verdict. */
export interface Finding {
  reason: string;
  suggested: MaskRule;
}

// ---------------------------------------------------------------------------
// Types: a suggestion must fit the column (faker and hash produce text,
// dateShift needs a date), so the type decides what is suggested, or whether
// the name is evidence at all (an `email_verified` boolean is not an email).

export type TypeClass = "text" | "date" | "number" | "ip" | "bytes" | "other";

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
export function typeClass(type: string): TypeClass {
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

/** Which rule fits, or undefined when nothing sensible does (the name is then no evidence). */
export function byType(cls: TypeClass, fits: Partial<Record<TypeClass, MaskRule>>): MaskRule | undefined {
  return fits[cls];
}

/** The rules the classifiers suggest. */
export const EMAIL: MaskRule = { kind: "faker", generator: "email", domain: "email" };
export const faker = (
  generator: "phone" | "fullName" | "firstName" | "lastName" | "streetAddress" | "city" | "postcode" | "iban" | "cardNumber" | "ipv4" | "username" | "text",
): MaskRule => ({ kind: "faker", generator });
export const HASH: MaskRule = { kind: "hash" };
export const NULL: MaskRule = { kind: "null" };
/** An RFC 5737 documentation address: fits inet and cidr, NOT NULL and all. */
export const DOC_IP: MaskRule = { kind: "constant", value: "192.0.2.1" };

/** A finding, or undefined when no rule fits the column (the evidence then counts for nothing). */
export function found(reason: string, suggested: MaskRule | undefined): Finding | undefined {
  return suggested === undefined ? undefined : { reason, suggested };
}
