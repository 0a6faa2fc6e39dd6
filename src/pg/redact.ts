/**
 * Redaction of secrets from anything Airlock prints or logs. Connection
 * strings lose their password; known secret values are replaced wherever
 * they appear in free text (error messages from child processes, logs).
 */

const REDACTED = "********";

/** A connection URL with its password replaced; non-URL strings get key=value passwords masked. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = REDACTED;
    for (const key of ["password", "sslpassword"]) {
      if (parsed.searchParams.has(key)) parsed.searchParams.set(key, REDACTED);
    }
    return parsed.toString();
  } catch {
    return redactText(url);
  }
}

/**
 * Free text with secrets removed: the password part of every URL-like
 * `scheme://user:password@host`, every `password=…` pair, and each of the
 * given literal secrets.
 */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s]*)(@)/gi, `$1${REDACTED}$3`);
  out = out.replace(/\b(password|sslpassword|PGPASSWORD)(\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s&;]+)/gi, `$1$2${REDACTED}`);
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join(REDACTED);
  }
  return out;
}
