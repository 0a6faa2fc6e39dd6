/**
 * HMAC-SHA256 keyed by the operator's AIRLOCK_SECRET: the seed of every
 * masked value and the fingerprint of every production row.
 */
import { createHmac } from "node:crypto";
import { Sha256Hmac } from "./sha256.ts";

/** HMAC-SHA256 keyed once by a secret; see sha256.ts for why it is not node:crypto. */
export class KeyedHmac {
  private readonly impl: Sha256Hmac;
  constructor(key: string) {
    this.impl = new Sha256Hmac(Buffer.from(key, "utf8"));
  }
  /** HMAC of a message. */
  digest(message: string): Buffer {
    return this.impl.digest(message);
  }
}

/** HMAC-SHA256(secret, message): exported for row fingerprints and tests. */
export function hmac(secret: string, message: string): Buffer {
  return createHmac("sha256", secret).update(message, "utf8").digest();
}

