/**
 * COPY text format (the default of `COPY … TO STDOUT` / `FROM STDIN`):
 * columns separated by tabs, rows by newlines, NULL written as `\N`,
 * backslash, tab, newline, carriage return (and \b \f \v) escaped.
 * Escaped newlines mean a raw "\n" always ends a row.
 */

const ESCAPES: Readonly<Record<string, string>> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f", "\v": "\\v" };
const NEEDS_ESCAPE = /[\\\t\n\r\b\f\v]/;
const TO_ESCAPE = /[\\\t\n\r\b\f\v]/g;

/** The COPY text form of a value: `\N` for null, special characters escaped. */
export function copyText(value: string | null): string {
  if (value === null) return "\\N";
  // Most values have nothing to escape; testing first avoids a replace per value.
  if (!NEEDS_ESCAPE.test(value)) return value;
  return value.replace(TO_ESCAPE, (c) => ESCAPES[c] ?? c);
}

const UNESCAPES: Readonly<Record<string, string>> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };

const BYTE_ESCAPE = /\\(x[0-9A-Fa-f]|[0-7])/;
const ANY_ESCAPE = /\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)/gs;

/** The value of one COPY text field: null for `\N`, escapes resolved. */
export function copyValue(field: string): string | null {
  if (field === "\\N") return null;
  if (!field.includes("\\")) return field;
  if (BYTE_ESCAPE.test(field)) return withByteEscapes(field);
  return field.replace(ANY_ESCAPE, (_, e: string) => UNESCAPES[e] ?? e);
}

/**
 * `\xHH` and `\ooo` are bytes, and several of them can make one UTF-8
 * character, so such a field is resolved to bytes and decoded once. COPY
 * TO never writes them; they come from hand-written COPY input.
 */
function withByteEscapes(field: string): string {
  const parts: Buffer[] = [];
  let at = 0;
  for (const m of field.matchAll(ANY_ESCAPE)) {
    const e = m[1]!;
    parts.push(Buffer.from(field.slice(at, m.index), "utf8"));
    if (e[0] === "x" && e.length > 1) parts.push(Buffer.from([parseInt(e.slice(1), 16)]));
    else if (/^[0-7]+$/.test(e)) parts.push(Buffer.from([parseInt(e, 8) & 0xff]));
    else parts.push(Buffer.from(UNESCAPES[e] ?? e, "utf8"));
    at = m.index + m[0].length;
  }
  parts.push(Buffer.from(field.slice(at), "utf8"));
  return Buffer.concat(parts).toString("utf8");
}
