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

/** The value of one COPY text field: null for `\N`, escapes resolved. */
export function copyValue(field: string): string | null {
  if (field === "\\N") return null;
  if (!field.includes("\\")) return field;
  return field.replace(/\\(x[0-9A-Fa-f]{1,2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === "x" && e.length > 1) return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return UNESCAPES[e] ?? e;
  });
}
