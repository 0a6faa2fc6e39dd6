/**
 * The staging proxy's share of the PostgreSQL wire protocol: framing of
 * startup-phase packets and typed messages, the messages the proxy itself
 * sends (authentication requests, FATAL errors, protocol negotiation), a
 * packet reader for the handshake, the refusals a handshake can end in, and
 * the client's first packet (SSL and GSS encryption declined, cancel or
 * startup).
 */
import type { Socket } from "node:net";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_MAJOR = 3;
const PROTOCOL_3_0 = 196608;
const MAX_STARTUP_PACKET = 10_000;
export const MAX_CLIENT_AUTH_MESSAGE = 10_000;
export const MAX_UPSTREAM_STARTUP_MESSAGE = 1 << 20;
// A socket sending more than this before relaying is paused until the proxy needs more.
const HANDSHAKE_HIGH_WATER = 64 * 1024;

export const AUTH_OK = 0;
export const AUTH_SASL = 10;
export const AUTH_SASL_CONTINUE = 11;
export const AUTH_SASL_FINAL = 12;

/** A big-endian int32. */
export function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

/** A NUL-terminated string (NULs inside dropped). */
export function cstring(s: string): Buffer {
  return Buffer.from(`${s.replace(/\0/g, "")}\0`, "utf8");
}

/** A typed backend/frontend message: type byte, length, body. */
export function message(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(type, "latin1"), int32(body.length + 4), body]);
}

/** An Authentication* request with its code and data. */
export function authRequest(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return message("R", Buffer.concat([int32(code), data]));
}

/** A FATAL ErrorResponse, as Postgres sends before closing a connection. */
export function fatalError(sqlstate: string, text: string): Buffer {
  const fields = [
    ["S", "FATAL"],
    ["V", "FATAL"],
    ["C", sqlstate],
    ["M", text],
  ].map(([k, v]) => Buffer.concat([Buffer.from(k!, "latin1"), cstring(v!)]));
  return message("E", Buffer.concat([...fields, Buffer.alloc(1)]));
}

/** A protocol 3.0 StartupMessage with these parameters. */
export function startupMessage(params: Readonly<Record<string, string>>): Buffer {
  const pairs = Object.entries(params).flatMap(([k, v]) => [cstring(k), cstring(v)]);
  const body = Buffer.concat([int32(PROTOCOL_3_0), ...pairs, Buffer.alloc(1)]);
  return Buffer.concat([int32(body.length + 4), body]);
}

/** NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_.` options asked for. */
export function negotiateProtocolVersion(unsupported: readonly string[]): Buffer {
  return message("v", Buffer.concat([int32(0), int32(unsupported.length), ...unsupported.map(cstring)]));
}

/** Splits a run of NUL-terminated strings; undefined if the last one is not terminated. */
export function cstrings(body: Buffer): string[] | undefined {
  const out: string[] = [];
  let start = 0;
  while (start < body.length) {
    const end = body.indexOf(0, start);
    if (end < 0) return undefined;
    out.push(body.toString("utf8", start, end));
    start = end + 1;
  }
  return out;
}

/** An ErrorResponse's SQLSTATE and message, for the log. */
function describeError(body: Buffer): string {
  const fields = new Map<string, string>();
  for (const field of cstrings(body) ?? []) if (field !== "") fields.set(field[0]!, field.slice(1));
  return `${fields.get("C") ?? "?????"} ${fields.get("M") ?? ""}`.trim();
}

// ------------------------------------------------------------------ errors inside a handshake

/** Refuses the client with a FATAL error and closes. */
export class Refusal extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}

/** Upstream refused: its ErrorResponse goes to the client verbatim. */
export class UpstreamRefusal extends Error {
  constructor(readonly raw: Buffer) {
    super(`the staging server refused: ${describeError(raw.subarray(5))}`);
  }
}

/** The socket went away; nothing to say to anyone. */
export class Closed extends Error {}

/** A packet reader for the handshake; `detach` hands the unread bytes over for relaying. */
export class PacketReader {
  private buffer: Buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  private closed = false;
  private readonly onData = (chunk: Buffer) => {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (this.buffer.length > HANDSHAKE_HIGH_WATER) this.socket.pause();
    this.notify();
  };
  private readonly onGone = () => {
    this.closed = true;
    this.notify();
  };

  constructor(
    private readonly socket: Socket,
    /** The refusal for a malformed packet (what the peer is, in words). */
    private readonly malformed: (what: string) => Refusal,
  ) {
    socket.on("data", this.onData);
    socket.on("end", this.onGone);
    socket.on("close", this.onGone);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buffer.length < n) {
      if (this.closed) throw new Closed();
      this.socket.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private take(n: number): Buffer {
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** A length-prefixed startup-phase packet (StartupMessage, SSLRequest, CancelRequest…), whole. */
  async startupPacket(): Promise<Buffer> {
    await this.need(4);
    const length = this.buffer.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_PACKET) throw this.malformed("invalid startup packet length");
    await this.need(length);
    return this.take(length);
  }

  /** A typed message, whole (`raw`) and split. */
  async message(max: number): Promise<{ type: string; body: Buffer; raw: Buffer }> {
    await this.need(5);
    const length = this.buffer.readInt32BE(1);
    if (length < 4 || length > max) throw this.malformed("invalid message length");
    await this.need(1 + length);
    const raw = this.take(1 + length);
    return { type: String.fromCharCode(raw[0]!), body: raw.subarray(5), raw };
  }

  /** Stops reading; returns what was read but not consumed. The socket is left paused. */
  detach(): Buffer {
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onGone);
    this.socket.off("close", this.onGone);
    this.socket.pause();
    return this.take(this.buffer.length);
  }
}

/** Refusals for a malformed packet, from the client or from the staging server. */
export const clientMalformed = (what: string) => new Refusal("08P01", `airlock: ${what}`);
export const upstreamMalformed = (what: string) => new Refusal("08P01", `airlock: the staging server sent an ${what}`);

/** Writes unless the socket is gone. */
export function writeTo(socket: Socket, data: Buffer | string): void {
  if (!socket.destroyed && socket.writable) socket.write(data);
}

// ------------------------------------------------------------------ the first packet

/** What a client's first packet asks for: a connection, or to cancel another's query. */
export type FirstPacket =
  | { readonly kind: "startup"; readonly params: Record<string, string>; readonly unsupported: string[]; readonly minor: number }
  | { readonly kind: "cancel"; readonly raw: Buffer };

/** Reads the first packet, declining SSL and GSS encryption (loopback only) as often as asked, within reason. */
export async function readFirstPacket(reader: PacketReader, client: Socket): Promise<FirstPacket> {
  for (let round = 0; round < 3; round++) {
    const packet = await reader.startupPacket();
    const code = packet.readInt32BE(4);
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      if (packet.length !== 8) throw clientMalformed("invalid startup packet");
      writeTo(client, "N");
      continue;
    }
    if (code === CANCEL_REQUEST) {
      if (packet.length !== 16) throw clientMalformed("invalid cancel request");
      return { kind: "cancel", raw: packet };
    }
    if (code >>> 16 !== PROTOCOL_MAJOR)
      throw new Refusal("0A000", `airlock: unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: only 3.0 is supported`);
    return { kind: "startup", minor: code & 0xffff, ...parseStartupParams(packet.subarray(8)) };
  }
  throw clientMalformed("too many encryption requests");
}

/** The StartupMessage's parameters; `_pq_.` protocol options are set aside (none is supported). */
function parseStartupParams(body: Buffer): { params: Record<string, string>; unsupported: string[] } {
  const strings = body[body.length - 1] === 0 ? cstrings(body.subarray(0, body.length - 1)) : undefined;
  if (strings === undefined || strings.length % 2 !== 0) throw clientMalformed("invalid startup packet layout: expected terminator as last byte");
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  const unsupported: string[] = [];
  for (let i = 0; i < strings.length; i += 2) {
    const key = strings[i]!;
    if (key === "") throw clientMalformed("invalid startup packet layout");
    if (key.startsWith("_pq_.")) unsupported.push(key);
    else params[key] = strings[i + 1]!;
  }
  return { params, unsupported };
}
