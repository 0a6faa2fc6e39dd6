/**
 * Keys derived from AIRLOCK_SECRET, one per purpose, so that what Airlock
 * writes under `.airlock/` and in production's `airlock` schema cannot be
 * forged by anyone who can write there but does not hold the secret (an
 * agent outside the sandbox, say). The secret is the one the snapshot was
 * keyed with (masking seeds, row fingerprints); each purpose gets its own key
 * through HKDF-SHA256 with a distinct label, so a MAC made for one purpose
 * (an approval) is never valid for another (a diff, an audit entry), and
 * none of them is a masking seed or a row fingerprint.
 *
 * Rotating the secret invalidates everything keyed with the old one: take a
 * new snapshot, diff the sessions again, approve again. Audit entries keyed
 * with the old secret no longer verify under the new one.
 */
import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import { AirlockError, EXIT_REFUSED } from "../errors.ts";

/** What a key authenticates. */
export type KeyPurpose = "diff" | "approval" | "audit-staging" | "audit-production" | "leak-allowance";

// Part of every MAC ever written: changing a label invalidates what was written under it.
const LABELS: Readonly<Record<KeyPurpose, string>> = {
  diff: "airlock/v1/diff-verification",
  approval: "airlock/v1/approval",
  "audit-staging": "airlock/v1/audit-staging",
  "audit-production": "airlock/v1/audit-production",
  // Not a MAC of something Airlock wrote: the keyed hash of a value the leak scan may allow (masking.allow).
  "leak-allowance": "airlock/v1/leak-allowance",
};

const SALT = "airlock/v1/keys";

/** The shortest AIRLOCK_SECRET accepted (the same floor as capture's). */
export const MIN_SECRET_LENGTH = 16;

/** An HMAC-SHA256 key for one purpose, derived from AIRLOCK_SECRET. */
export class MacKey {
  readonly purpose: KeyPurpose;
  private readonly key: Buffer;

  constructor(secret: string, purpose: KeyPurpose) {
    this.purpose = purpose;
    this.key = Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), SALT, LABELS[purpose], 32));
  }

  /** The MAC of a message, hex. */
  mac(message: string): string {
    return createHmac("sha256", this.key).update(message, "utf8").digest("hex");
  }

  /** True when `mac` is this key's MAC of `message` (compared in constant time). */
  holds(message: string, mac: unknown): boolean {
    if (typeof mac !== "string" || !/^[0-9a-f]{64}$/.test(mac)) return false;
    return timingSafeEqual(Buffer.from(this.mac(message), "hex"), Buffer.from(mac, "hex"));
  }
}

/** AIRLOCK_SECRET from the caller, else the environment (`.env` is loaded into it with the project). */
export function secretFromEnv(secret?: string): string | undefined {
  const s = secret ?? process.env.AIRLOCK_SECRET;
  return s === undefined || s === "" ? undefined : s;
}

/** The secret, or a refusal (exit 2) naming the step that needs it. */
export function requireSecret(secret: string | undefined, step: string): string {
  if (secret === undefined || secret.length < MIN_SECRET_LENGTH) {
    throw new AirlockError(
      "AIRLOCK_SECRET_MISSING",
      `${step} needs AIRLOCK_SECRET (at least ${MIN_SECRET_LENGTH} characters): diffs, approvals and audit entries are authenticated with keys derived from it`,
      {
        hint: "set AIRLOCK_SECRET in .env to the secret the snapshot was taken with",
        exitCode: EXIT_REFUSED,
      },
    );
  }
  return secret;
}
