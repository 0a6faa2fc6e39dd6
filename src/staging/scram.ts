/**
 * SCRAM-SHA-256 (RFC 5802 and RFC 7677) as PostgreSQL speaks it, both halves.
 * The staging proxy (proxy.ts) is a SCRAM server to agents, so that nothing
 * unauthenticated ever reaches Postgres, and a SCRAM client to Postgres over
 * its Unix socket, with the same password. Only the math and the message
 * grammar live here; the wire framing is the proxy's.
 *
 * Like Postgres: no channel binding (we offer no `-PLUS` mechanism), the
 * SCRAM user name is ignored (the startup packet names the role), and
 * SASLprep is skipped (Airlock's passwords are base64url ASCII, which
 * SASLprep leaves unchanged).
 */
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";

/** The one mechanism offered and used. */
export const SCRAM_MECHANISM = "SCRAM-SHA-256";
/** Postgres's default iteration count (scram_iterations). */
export const SCRAM_ITERATIONS = 4096;

// An upstream asking for more than this many PBKDF2 rounds is refused, not obeyed.
const MAX_ITERATIONS = 10_000_000;
const NONCE_BYTES = 18;
const KEY_BYTES = 32;

/** A malformed or inconsistent SCRAM message (a protocol violation, not a wrong password). */
export class ScramError extends Error {
  override readonly name = "ScramError";
}

function hmac(key: Buffer, text: string): Buffer {
  return createHmac("sha256", key).update(text, "utf8").digest();
}

function sha256(data: Buffer): Buffer {
  return createHash("sha256").update(data).digest();
}

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString("base64");
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64(text: string, what: string): Buffer {
  if (!BASE64.test(text)) throw new ScramError(`malformed SCRAM message: ${what} is not base64`);
  return Buffer.from(text, "base64");
}

// RFC 5802: printable ASCII except ",".
const NONCE = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Splits `k=v,k=v` into ordered attributes; rejects anything else. */
function attributes(text: string): Array<[string, string]> {
  return text.split(",").map((part) => {
    if (!/^[A-Za-z]=/.test(part)) throw new ScramError("malformed SCRAM message: expected attribute=value");
    return [part[0]!, part.slice(2)];
  });
}

/** PBKDF2-HMAC-SHA256 of the password: the expensive step, so callers cache it. */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pbkdf2(Buffer.from(password, "utf8"), salt, iterations, KEY_BYTES, "sha256", (e, key) => (e === null ? resolve(key) : reject(e)));
  });
}

// ---------------------------------------------------------------- server half

/** What the server keeps of a password: a salt, the iteration count and the two derived keys. */
export interface ScramServerSecret {
  readonly salt: Buffer;
  readonly iterations: number;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/** Derives the server's secret for a password (one PBKDF2 run). */
export async function scramServerSecret(password: string, salt: Buffer, iterations = SCRAM_ITERATIONS): Promise<ScramServerSecret> {
  const salted = await saltedPassword(password, salt, iterations);
  return { salt, iterations, storedKey: sha256(hmac(salted, "Client Key")), serverKey: hmac(salted, "Server Key") };
}

/** A parsed client-first-message. */
export interface ClientFirst {
  /** "n,," or "y,,": what the client-final's c= attribute must encode. */
  readonly gs2Header: string;
  /** The message without the GS2 header (part of the AuthMessage). */
  readonly bare: string;
  readonly nonce: string;
}

/** Parses a client-first-message ("n,,n=,r=<nonce>"); refuses channel binding and authorization identities. */
export function parseClientFirst(message: string): ClientFirst {
  const flag = message[0];
  if (flag === "p") throw new ScramError("channel binding is not supported: the server offers only SCRAM-SHA-256, not SCRAM-SHA-256-PLUS");
  if ((flag !== "n" && flag !== "y") || message[1] !== ",") throw new ScramError("malformed SCRAM message: bad GS2 header");
  const authzEnd = message.indexOf(",", 2);
  if (authzEnd < 0) throw new ScramError("malformed SCRAM message: bad GS2 header");
  if (authzEnd !== 2) throw new ScramError("SCRAM authorization identities are not supported");
  const gs2Header = message.slice(0, authzEnd + 1);
  const bare = message.slice(authzEnd + 1);
  const attrs = attributes(bare);
  if (attrs[0]?.[0] === "m") throw new ScramError("SCRAM extensions are not supported");
  if (attrs[0]?.[0] !== "n" || attrs[1]?.[0] !== "r") throw new ScramError("malformed SCRAM message: expected n= and r=");
  const nonce = attrs[1][1];
  if (!NONCE.test(nonce)) throw new ScramError("malformed SCRAM message: bad client nonce");
  return { gs2Header, bare, nonce };
}

/** The server-first-message and the combined nonce it carries. */
export interface ServerFirst {
  readonly message: string;
  readonly nonce: string;
}

/** Builds the server-first-message: the client's nonce extended with ours, the salt and iteration count. */
export function serverFirst(clientNonce: string, secret: ScramServerSecret): ServerFirst {
  const nonce = clientNonce + newNonce();
  return { nonce, message: `r=${nonce},s=${secret.salt.toString("base64")},i=${secret.iterations}` };
}

/** A parsed client-final-message. */
export interface ClientFinal {
  readonly channelBinding: string;
  readonly nonce: string;
  /** Everything before ",p=" (part of the AuthMessage). */
  readonly withoutProof: string;
  readonly proof: Buffer;
}

/** Parses a client-final-message ("c=biws,r=<nonce>,p=<proof>"). */
export function parseClientFinal(message: string): ClientFinal {
  const at = message.lastIndexOf(",p=");
  if (at < 0) throw new ScramError("malformed SCRAM message: no proof");
  const withoutProof = message.slice(0, at);
  const attrs = attributes(withoutProof);
  if (attrs[0]?.[0] !== "c" || attrs[1]?.[0] !== "r") throw new ScramError("malformed SCRAM message: expected c= and r=");
  const proof = decodeBase64(message.slice(at + 3), "the proof");
  if (proof.length !== KEY_BYTES) throw new ScramError("malformed SCRAM message: bad proof length");
  return { channelBinding: attrs[0][1], nonce: attrs[1][1], withoutProof, proof };
}

/**
 * Checks the client's proof. Returns the server-final-message ("v=<signature>")
 * when the client knows the password, undefined when it does not; throws
 * ScramError when the exchange is inconsistent (nonce or channel binding).
 */
export function checkClientFinal(first: ClientFirst, sent: ServerFirst, final: ClientFinal, secret: ScramServerSecret): string | undefined {
  if (final.channelBinding !== Buffer.from(first.gs2Header, "utf8").toString("base64")) throw new ScramError("SCRAM channel binding check failed");
  if (final.nonce !== sent.nonce) throw new ScramError("SCRAM nonce mismatch");
  const authMessage = `${first.bare},${sent.message},${final.withoutProof}`;
  const clientKey = xor(final.proof, hmac(secret.storedKey, authMessage));
  if (!timingSafeEqual(sha256(clientKey), secret.storedKey)) return undefined;
  return `v=${hmac(secret.serverKey, authMessage).toString("base64")}`;
}

// ---------------------------------------------------------------- client half

/** A client-first-message, its bare part and nonce. */
export interface ClientStart {
  readonly message: string;
  readonly bare: string;
  readonly nonce: string;
}

/** Builds a client-first-message as libpq does: no channel binding, empty user name. */
export function clientFirst(): ClientStart {
  const nonce = newNonce();
  const bare = `n=,r=${nonce}`;
  return { message: `n,,${bare}`, bare, nonce };
}

/** A parsed server-first-message. */
export interface ServerChallenge {
  readonly nonce: string;
  readonly salt: Buffer;
  readonly iterations: number;
}

/** Parses the server-first-message; its nonce must extend ours. */
export function parseServerFirst(message: string, clientNonce: string): ServerChallenge {
  const attrs = attributes(message);
  if (attrs[0]?.[0] !== "r" || attrs[1]?.[0] !== "s" || attrs[2]?.[0] !== "i") throw new ScramError("malformed SCRAM message: expected r=, s= and i=");
  const nonce = attrs[0][1];
  if (!nonce.startsWith(clientNonce) || nonce.length === clientNonce.length || !NONCE.test(nonce)) throw new ScramError("SCRAM nonce mismatch");
  const salt = decodeBase64(attrs[1][1], "the salt");
  const iterations = Number(attrs[2][1]);
  if (!/^[1-9][0-9]*$/.test(attrs[2][1]) || iterations > MAX_ITERATIONS) throw new ScramError("malformed SCRAM message: bad iteration count");
  return { nonce, salt, iterations };
}

/** The client-final-message and the server signature to expect back. */
export interface ClientProof {
  readonly message: string;
  readonly serverSignature: Buffer;
}

/** Builds the client-final-message from the salted password (see saltedPassword). */
export function clientFinal(salted: Buffer, start: ClientStart, serverFirstMessage: string, challenge: ServerChallenge): ClientProof {
  const withoutProof = `c=biws,r=${challenge.nonce}`;
  const authMessage = `${start.bare},${serverFirstMessage},${withoutProof}`;
  const clientKey = hmac(salted, "Client Key");
  const proof = xor(clientKey, hmac(sha256(clientKey), authMessage));
  return { message: `${withoutProof},p=${proof.toString("base64")}`, serverSignature: hmac(hmac(salted, "Server Key"), authMessage) };
}

/** True when the server-final-message proves the server knows the password too. */
export function checkServerFinal(message: string, expected: ClientProof): boolean {
  const attrs = attributes(message);
  if (attrs[0]?.[0] === "e") throw new ScramError(`the server reported a SCRAM error: ${attrs[0][1]}`);
  if (attrs[0]?.[0] !== "v") throw new ScramError("malformed SCRAM message: expected v=");
  const signature = decodeBase64(attrs[0][1], "the server signature");
  return signature.length === expected.serverSignature.length && timingSafeEqual(signature, expected.serverSignature);
}
