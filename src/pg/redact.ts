/**
 * Redaction of secrets from anything Airlock prints or logs. Connection
 * strings lose their password whatever their shape (a URL with or without a
 * scheme, a libpq `key=value` string, a malformed one); known secret values
 * are replaced wherever they appear in free text (error messages from child
 * processes, logs), also percent-encoded or JSON-escaped.
 */

const REDACTED = "********";

/** Keys whose value is a password: libpq and URL query parameters, environment-style assignments. */
const PASSWORD_KEYS = ["sslpassword", "pgpassword", "password", "passwd", "pwd"];

/** A key, case-insensitive, each character also as a percent-escape (`pass%77ord`). */
function keyPattern(key: string): string {
  const hex = (c: string) => c.charCodeAt(0).toString(16);
  return [...key].map((c) => `(?:${c}|%${hex(c)}|%${hex(c.toUpperCase())})`).join("");
}

/**
 * Password pairs, `key = value` and `key: value`: libpq's `password='it\'s'`, a URL's `?password=…&…` (also
 * with a percent-encoded key), `PGPASSWORD=…`, JSON's `"password": "…"`. An unterminated quote runs to the end.
 */
const KEY_VALUE = new RegExp(
  `(?<![A-Za-z0-9_%])(["']?)(${PASSWORD_KEYS.map(keyPattern).join("|")})\\1(\\s*[=:]\\s*)('(?:[^'\\\\]|\\\\.)*(?:'|$)|"(?:[^"\\\\]|\\\\.)*(?:"|$)|[^\\s&;]*)`,
  "gi",
);

/** `scheme://user:password@` in free text: the password runs to the last `@` of its whitespace-free stretch. */
const URL_USERINFO = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)(\S*)(@)/gi;

/** A value as written and as meant: without its quotes and backslash escapes, percent-decoded. */
function valueForms(raw: string): string[] {
  const forms = new Set<string>([raw]);
  const quoted = /^(['"])([\s\S]*?)\1?$/.exec(raw);
  if (quoted !== null) {
    forms.add(quoted[2]!);
    forms.add(quoted[2]!.replace(/\\(.)/g, "$1"));
  }
  for (const f of [...forms]) {
    try {
      forms.add(decodeURIComponent(f));
    } catch {
      // not percent-encoded
    }
  }
  forms.delete("");
  forms.delete(REDACTED);
  return [...forms];
}

function redactPairs(text: string, found?: string[]): string {
  return text.replace(KEY_VALUE, (match, quote: string, key: string, sep: string, value: string) => {
    if (value === "" || value.startsWith(REDACTED)) return match;
    found?.push(...valueForms(value));
    return `${quote}${key}${quote}${sep}${REDACTED}`;
  });
}

/**
 * One string that is (or may be) a connection string, with every password replaced, and the passwords
 * found. Whatever the shape — `postgres://u:p@h`, `u:p@h/db` without a scheme, `postgres:u:p@h`, a
 * password with `@`, `/`, spaces or percent-escapes in it, a bad port, `password=…` pairs — everything
 * between the first `:` of the user part and the last `@` counts as the password. Over-redacting a
 * malformed string is fine; showing a password is not.
 */
function redactConnectionString(s: string): { text: string; secrets: string[] } {
  const found: string[] = [];
  let text = redactPairs(s, found);
  const at = text.lastIndexOf("@");
  if (at > 0) {
    const start = /^\s*(?:[a-z][a-z0-9+.-]*:)?\/\//i.exec(text)?.[0].length ?? 0;
    const colon = text.indexOf(":", start);
    if (colon !== -1 && colon < at) {
      const password = text.slice(colon + 1, at);
      if (password !== "" && password !== REDACTED) {
        found.push(...valueForms(password));
        text = `${text.slice(0, colon + 1)}${REDACTED}${text.slice(at)}`;
      }
    }
  }
  return { text, secrets: [...new Set(found)] };
}

/** A connection string (URL, libpq key=value, or anything a user passed as one) with its password replaced. */
export function redactUrl(url: string): string {
  return redactConnectionString(url).text;
}

/**
 * The passwords a string that may be a connection string carries, as written and decoded: what
 * `redactUrl` hides. The CLI adds them to its known secrets, so they are removed wherever they appear.
 */
export function credentialsIn(value: string): string[] {
  return redactConnectionString(value).secrets;
}

/** The forms a secret can take in printed text: as is, percent-encoded, JSON-escaped. */
function secretForms(secret: string): string[] {
  return [secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)];
}

/**
 * Free text with secrets removed: the password part of every URL-like
 * `scheme://user:password@host`, every `password=…` pair, and each of the
 * given literal secrets (also percent-encoded or JSON-escaped).
 */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(URL_USERINFO, (match, head: string, password: string, at: string) => (password === REDACTED ? match : `${head}${REDACTED}${at}`));
  out = redactPairs(out);
  const forms = [...new Set(secrets.filter((s) => s.length >= 4).flatMap(secretForms))].sort((a, b) => b.length - a.length);
  for (const form of forms) out = out.split(form).join(REDACTED);
  return out;
}
