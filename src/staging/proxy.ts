/**
 * The staging proxy: the only TCP door to the staging cluster, which itself
 * listens only on its Unix socket. It speaks just enough of the PostgreSQL
 * wire protocol to authenticate agents itself (SCRAM-SHA-256 as a server)
 * before anything reaches Postgres, so that one session's connection storm or
 * stalled handshakes never use up backend slots or another session's
 * capacity: an unauthenticated socket costs only a proxy socket and times out
 * fast, and upstream slots are taken only after authentication, capped per
 * session. Once Postgres (reached over the socket, SCRAM-SHA-256 as a client
 * with the same password) says AuthenticationOk, the proxy relays bytes both
 * ways and interprets nothing more, except that it reads upstream's messages
 * up to the first ReadyForQuery to learn the BackendKeyData: cancel requests
 * are forwarded only for connections it relays, so they cannot be used to
 * make Postgres fork without authenticating.
 *
 * Passwords are never logged and never put in an error.
 */
import { randomBytes } from "node:crypto";
import { type Server, type Socket, connect as connectSocket, createServer } from "node:net";
import { AirlockError } from "../errors.ts";
import {
  type ScramServerSecret,
  SCRAM_ITERATIONS,
  SCRAM_MECHANISM,
  ScramError,
  checkClientFinal,
  checkServerFinal,
  clientFinal,
  clientFirst,
  parseClientFinal,
  parseClientFirst,
  parseServerFirst,
  saltedPassword,
  scramServerSecret,
  serverFirst,
} from "./scram.ts";

/** One agent session as the proxy sees it. */
export interface ProxySession {
  /** The agent role (Postgres user name). */
  readonly role: string;
  /** The only database it may connect to (its work database). */
  readonly database: string;
  /** The role's password (the same one Postgres has for it). */
  readonly password: string;
  /** Authenticated upstream connections at once. */
  readonly maxConnections: number;
  /** When set, the session is stopped: every new connection gets this message as a FATAL error. */
  readonly stopped?: string;
}

export interface ProxyOptions {
  /** Address to listen on ("127.0.0.1"). */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** The cluster's Unix socket directory. */
  readonly upstreamSocketDir: string;
  /** The cluster's port (the socket file is .s.PGSQL.<port>). */
  readonly upstreamPort: number;
  /** Looked up per connection (sessions come and go). */
  readonly sessions: (role: string) => ProxySession | undefined;
  /** From accept to relaying, in ms (default 5000). */
  readonly handshakeTimeoutMs?: number;
  /** Receives one line per notable event; never passwords. */
  readonly log?: (line: string) => void;
}

export interface Proxy {
  readonly port: number;
  /** Authenticated connections per role: relaying, or opening their upstream leg (each holds a slot). */
  connections(): Map<string, number>;
  /** Closes every authenticated connection of a role (e.g. when its session is stopped). */
  disconnect(role: string): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

// ------------------------------------------------------------------ wire format

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_MAJOR = 3;
const PROTOCOL_3_0 = 196608;
const MAX_STARTUP_PACKET = 10_000;
const MAX_CLIENT_AUTH_MESSAGE = 10_000;
const MAX_UPSTREAM_STARTUP_MESSAGE = 1 << 20;
// A socket sending more than this before relaying is paused until the proxy needs more.
const HANDSHAKE_HIGH_WATER = 64 * 1024;
// How long a closing side gets to flush what it still has to write.
const CLOSE_GRACE_MS = 2_000;

const AUTH_OK = 0;
const AUTH_SASL = 10;
const AUTH_SASL_CONTINUE = 11;
const AUTH_SASL_FINAL = 12;

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function cstring(s: string): Buffer {
  return Buffer.from(`${s.replace(/\0/g, "")}\0`, "utf8");
}

/** A typed backend/frontend message: type byte, length, body. */
function message(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(type, "latin1"), int32(body.length + 4), body]);
}

function authRequest(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return message("R", Buffer.concat([int32(code), data]));
}

/** A FATAL ErrorResponse, as Postgres sends before closing a connection. */
function fatalError(sqlstate: string, text: string): Buffer {
  const fields = [["S", "FATAL"], ["V", "FATAL"], ["C", sqlstate], ["M", text]].map(([k, v]) => Buffer.concat([Buffer.from(k!, "latin1"), cstring(v!)]));
  return message("E", Buffer.concat([...fields, Buffer.alloc(1)]));
}

function startupMessage(params: Readonly<Record<string, string>>): Buffer {
  const pairs = Object.entries(params).flatMap(([k, v]) => [cstring(k), cstring(v)]);
  const body = Buffer.concat([int32(PROTOCOL_3_0), ...pairs, Buffer.alloc(1)]);
  return Buffer.concat([int32(body.length + 4), body]);
}

/** NegotiateProtocolVersion: we speak 3.0 and none of the `_pq_.` options asked for. */
function negotiateProtocolVersion(unsupported: readonly string[]): Buffer {
  return message("v", Buffer.concat([int32(0), int32(unsupported.length), ...unsupported.map(cstring)]));
}

/** Splits a run of NUL-terminated strings; undefined if the last one is not terminated. */
function cstrings(body: Buffer): string[] | undefined {
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
class Refusal extends Error {
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
  }
}

/** Upstream refused: its ErrorResponse goes to the client verbatim. */
class UpstreamRefusal extends Error {
  constructor(readonly raw: Buffer) {
    super(`the staging server refused: ${describeError(raw.subarray(5))}`);
  }
}

/** The socket went away; nothing to say to anyone. */
class Closed extends Error {}

/** A packet reader for the handshake; `detach` hands the unread bytes over for relaying. */
class PacketReader {
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

const clientMalformed = (what: string) => new Refusal("08P01", `airlock: ${what}`);
const upstreamMalformed = (what: string) => new Refusal("08P01", `airlock: the staging server sent an ${what}`);

// ------------------------------------------------------------------ proxy state

/** One client connection and, once authenticated, its upstream leg. */
interface Link {
  readonly client: Socket;
  upstream: Socket | undefined;
  /** Set once the client is authenticated and holds one of its session's slots. */
  slot: string | undefined;
  cancelKey: string | undefined;
  /** The handshake deadline, then the close grace period. */
  timer: NodeJS.Timeout | undefined;
  ending: boolean;
}

interface Context {
  readonly options: ProxyOptions;
  readonly upstreamPath: string;
  readonly log: (line: string) => void;
  readonly secrets: SecretCache;
  readonly links: Set<Link>;
  readonly slots: Map<string, Set<Link>>;
  readonly cancelKeys: Map<string, Link>;
  readonly cancelSockets: Set<Socket>;
}

/**
 * SCRAM secrets, so PBKDF2 runs once per role and password, not per connection:
 * the server half with one random salt per role for the proxy's lifetime, the
 * client half for the salt and iteration count Postgres has stored.
 */
class SecretCache {
  private readonly server = new Map<string, { password: string; secret: Promise<ScramServerSecret> }>();
  private readonly client = new Map<string, { password: string; salt: string; iterations: number; salted: Promise<Buffer> }>();

  serverSecret(role: string, password: string): Promise<ScramServerSecret> {
    const hit = this.server.get(role);
    if (hit !== undefined && hit.password === password) return hit.secret;
    const secret = scramServerSecret(password, randomBytes(16), SCRAM_ITERATIONS);
    this.server.set(role, { password, secret });
    secret.catch(() => this.server.delete(role));
    return secret;
  }

  salted(role: string, password: string, salt: Buffer, iterations: number): Promise<Buffer> {
    const hit = this.client.get(role);
    const saltText = salt.toString("base64");
    if (hit !== undefined && hit.password === password && hit.salt === saltText && hit.iterations === iterations) return hit.salted;
    const salted = saltedPassword(password, salt, iterations);
    this.client.set(role, { password, salt: saltText, iterations, salted });
    salted.catch(() => this.client.delete(role));
    return salted;
  }

  /** Drops what is kept for a role whose session is gone. */
  forget(role: string): void {
    this.server.delete(role);
    this.client.delete(role);
  }
}

function slotCount(ctx: Context, role: string): number {
  return ctx.slots.get(role)?.size ?? 0;
}

function takeSlot(ctx: Context, link: Link, role: string): void {
  let set = ctx.slots.get(role);
  if (set === undefined) ctx.slots.set(role, (set = new Set()));
  set.add(link);
  link.slot = role;
}

/** Gives the link's slot back; safe to call any number of times. */
function releaseSlot(ctx: Context, link: Link): void {
  if (link.slot === undefined) return;
  const set = ctx.slots.get(link.slot);
  set?.delete(link);
  if (set?.size === 0) ctx.slots.delete(link.slot);
  link.slot = undefined;
  if (link.cancelKey !== undefined && ctx.cancelKeys.get(link.cancelKey) === link) ctx.cancelKeys.delete(link.cancelKey);
  link.cancelKey = undefined;
}

function sockets(link: Link): Socket[] {
  return link.upstream === undefined ? [link.client] : [link.client, link.upstream];
}

/** Destroys both sides now. */
function destroyLink(ctx: Context, link: Link): void {
  releaseSlot(ctx, link);
  for (const s of sockets(link)) s.destroy();
}

/**
 * Ends both sides, letting what was written flush; destroys them after a grace period. The slot stays
 * taken until the upstream leg is gone: until then Postgres may still hold the backend.
 */
function endLink(ctx: Context, link: Link): void {
  if (link.ending) return;
  link.ending = true;
  clearTimeout(link.timer);
  for (const s of sockets(link)) s.end();
  link.timer = setTimeout(() => destroyLink(ctx, link), CLOSE_GRACE_MS);
}

/** Either side closed: the connection is over; its slot is free once upstream is gone, the link once both are. */
function onSocketClosed(ctx: Context, link: Link): void {
  if (link.upstream === undefined || link.upstream.destroyed) releaseSlot(ctx, link);
  if (sockets(link).every((s) => s.destroyed)) {
    clearTimeout(link.timer);
    ctx.links.delete(link);
    return;
  }
  endLink(ctx, link);
}

function writeTo(socket: Socket, data: Buffer | string): void {
  if (!socket.destroyed && socket.writable) socket.write(data);
}

// ------------------------------------------------------------------ the handshake

type FirstPacket =
  | { readonly kind: "startup"; readonly params: Record<string, string>; readonly unsupported: string[]; readonly minor: number }
  | { readonly kind: "cancel"; readonly raw: Buffer };

/** Reads the first packet, declining SSL and GSS encryption (loopback only) as often as asked, within reason. */
async function readFirstPacket(reader: PacketReader, client: Socket): Promise<FirstPacket> {
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
    if (code >>> 16 !== PROTOCOL_MAJOR) throw new Refusal("0A000", `airlock: unsupported frontend protocol ${code >>> 16}.${code & 0xffff}: only 3.0 is supported`);
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

function stoppedRefusal(session: ProxySession): Refusal {
  const text = session.stopped ?? "";
  return new Refusal("57P03", text.startsWith("airlock: ") ? text : `airlock: ${text}`);
}

function noSession(role: string): Refusal {
  return new Refusal("28000", `airlock: no session for role ${role}`);
}

/** Server-side SCRAM-SHA-256 with the session's password; ends with AuthenticationSASLFinal sent. */
async function authenticateClient(ctx: Context, reader: PacketReader, client: Socket, session: ProxySession): Promise<void> {
  const secret = await ctx.secrets.serverSecret(session.role, session.password);
  writeTo(client, authRequest(AUTH_SASL, Buffer.concat([cstring(SCRAM_MECHANISM), Buffer.alloc(1)])));
  const initial = await reader.message(MAX_CLIENT_AUTH_MESSAGE);
  if (initial.type !== "p") throw clientMalformed("expected a SASL response (is the client configured for SCRAM-SHA-256?)");
  const mechanismEnd = initial.body.indexOf(0);
  if (mechanismEnd < 0 || initial.body.length < mechanismEnd + 5) throw clientMalformed("malformed SASLInitialResponse");
  if (initial.body.toString("utf8", 0, mechanismEnd) !== SCRAM_MECHANISM) throw clientMalformed("client selected an invalid SASL authentication mechanism");
  const dataLength = initial.body.readInt32BE(mechanismEnd + 1);
  const data = initial.body.subarray(mechanismEnd + 5);
  if (dataLength !== data.length) throw clientMalformed("malformed SASLInitialResponse");
  const first = parseClientFirst(data.toString("utf8"));
  const sent = serverFirst(first.nonce, secret);
  writeTo(client, authRequest(AUTH_SASL_CONTINUE, Buffer.from(sent.message, "utf8")));
  const response = await reader.message(MAX_CLIENT_AUTH_MESSAGE);
  if (response.type !== "p") throw clientMalformed("expected a SASL response");
  const serverFinal = checkClientFinal(first, sent, parseClientFinal(response.body.toString("utf8")), secret);
  if (serverFinal === undefined) throw new Refusal("28P01", `password authentication failed for user "${session.role}"`);
  writeTo(client, authRequest(AUTH_SASL_FINAL, Buffer.from(serverFinal, "utf8")));
}

/** Connects to the cluster's Unix socket. */
function connectUpstream(ctx: Context, link: Link): Promise<Socket> {
  const upstream = connectSocket({ path: ctx.upstreamPath });
  link.upstream = upstream;
  upstream.on("close", () => onSocketClosed(ctx, link));
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      ctx.log(`proxy: cannot reach the staging server at ${ctx.upstreamPath}: ${e.code ?? e.message}`);
      reject(new Refusal("08006", "airlock: the staging server is not reachable"));
    };
    upstream.once("error", onError);
    upstream.once("connect", () => {
      upstream.off("error", onError);
      upstream.on("error", () => undefined);
      resolve(upstream);
    });
  });
}

/** Runs a client-half SCRAM step; a malformed server message is the server's fault, not the client's. */
function upstreamScram<T>(step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (e instanceof ScramError) throw new Refusal("08006", `airlock: SCRAM with the staging server failed: ${e.message}`);
    throw e;
  }
}

/**
 * Opens the upstream leg: StartupMessage with the client's parameters, then
 * SCRAM-SHA-256 as a client (or nothing, if the socket is trusted). Returns
 * upstream's AuthenticationOk and a reader positioned after it.
 */
async function openUpstream(ctx: Context, link: Link, session: ProxySession, params: Record<string, string>): Promise<{ upstream: Socket; reader: PacketReader; authOk: Buffer }> {
  const upstream = await connectUpstream(ctx, link);
  const reader = new PacketReader(upstream, upstreamMalformed);
  upstream.write(startupMessage(params));
  let start: ReturnType<typeof clientFirst> | undefined;
  let proof: ReturnType<typeof clientFinal> | undefined;
  for (;;) {
    const m = await reader.message(MAX_UPSTREAM_STARTUP_MESSAGE);
    if (m.type === "E") throw new UpstreamRefusal(m.raw);
    if (m.type === "N") continue;
    if (m.type !== "R" || m.body.length < 4) throw upstreamMalformed("unexpected message during authentication");
    const code = m.body.readInt32BE(0);
    const data = m.body.subarray(4);
    if (code === AUTH_OK) return { upstream, reader, authOk: m.raw };
    if (code === AUTH_SASL && start === undefined) {
      if (!(cstrings(data) ?? []).includes(SCRAM_MECHANISM)) throw new Refusal("08004", "airlock: the staging server does not offer SCRAM-SHA-256");
      start = clientFirst();
      const payload = Buffer.from(start.message, "utf8");
      upstream.write(message("p", Buffer.concat([cstring(SCRAM_MECHANISM), int32(payload.length), payload])));
    } else if (code === AUTH_SASL_CONTINUE && start !== undefined && proof === undefined) {
      const serverFirstMessage = data.toString("utf8");
      const challenge = upstreamScram(() => parseServerFirst(serverFirstMessage, start!.nonce));
      const salted = await ctx.secrets.salted(session.role, session.password, challenge.salt, challenge.iterations);
      proof = clientFinal(salted, start, serverFirstMessage, challenge);
      upstream.write(message("p", Buffer.from(proof.message, "utf8")));
    } else if (code === AUTH_SASL_FINAL && proof !== undefined) {
      if (!upstreamScram(() => checkServerFinal(data.toString("utf8"), proof!))) throw new Refusal("08006", "airlock: the staging server's SCRAM signature did not verify");
    } else {
      throw new Refusal("08004", `airlock: the staging server asked for authentication method ${code}; the proxy supports only SCRAM-SHA-256 (or trust) on the socket`);
    }
  }
}

/**
 * Relays: upstream's AuthenticationOk and what follows go to the client; the
 * client's early bytes go upstream first, then both directions are piped raw.
 * Upstream's messages up to the first ReadyForQuery are read one by one to
 * learn the BackendKeyData that cancel requests must name.
 */
async function relay(ctx: Context, link: Link, clientReader: PacketReader, up: { upstream: Socket; reader: PacketReader; authOk: Buffer }): Promise<void> {
  const { client } = link;
  const { upstream } = up;
  const early = clientReader.detach();
  writeTo(client, up.authOk);
  if (early.length > 0) upstream.write(early);
  client.pipe(upstream);
  for (;;) {
    const m = await up.reader.message(MAX_UPSTREAM_STARTUP_MESSAGE);
    writeTo(client, m.raw);
    if (m.type === "K" && m.body.length === 8 && link.slot !== undefined) {
      link.cancelKey = m.body.toString("hex");
      ctx.cancelKeys.set(link.cancelKey, link);
    }
    if (m.type === "Z" || m.type === "E") break;
  }
  const rest = up.reader.detach();
  if (rest.length > 0) writeTo(client, rest);
  // Closing already (one side went away): the timer is now the close grace period's.
  if (link.ending) return;
  upstream.pipe(client);
  clearTimeout(link.timer);
  link.timer = undefined;
}

/** Forwards a CancelRequest for a connection this proxy relays; ignores any other. */
function forwardCancel(ctx: Context, link: Link, raw: Buffer): void {
  const target = ctx.cancelKeys.get(raw.subarray(8, 16).toString("hex"));
  if (target === undefined) {
    ctx.log("proxy: ignored a cancel request that names no connection of this proxy");
    endLink(ctx, link);
    return;
  }
  const cancel = connectSocket({ path: ctx.upstreamPath });
  ctx.cancelSockets.add(cancel);
  cancel.on("error", () => undefined);
  cancel.setTimeout(5_000, () => cancel.destroy());
  // The client learns the cancel was delivered when Postgres closes the connection, as with Postgres itself.
  cancel.on("close", () => {
    ctx.cancelSockets.delete(cancel);
    endLink(ctx, link);
  });
  cancel.end(raw);
}

/** Everything from the first packet to relaying. */
async function handshake(ctx: Context, link: Link): Promise<void> {
  const { client } = link;
  const reader = new PacketReader(client, clientMalformed);
  const first = await readFirstPacket(reader, client);
  if (first.kind === "cancel") return forwardCancel(ctx, link, first.raw);
  const role = first.params.user;
  if (role === undefined || role === "") throw new Refusal("28000", "airlock: no user name in the startup packet");
  const database = first.params.database || role;
  const session = ctx.options.sessions(role);
  if (session === undefined) {
    ctx.secrets.forget(role);
    throw noSession(role);
  }
  if (session.stopped !== undefined) throw stoppedRefusal(session);
  if (first.minor !== 0 || first.unsupported.length > 0) writeTo(client, negotiateProtocolVersion(first.unsupported));
  await authenticateClient(ctx, reader, client, session);
  // The session may have changed while the client authenticated.
  const now = ctx.options.sessions(role);
  if (now === undefined || now.password !== session.password) throw noSession(role);
  if (now.stopped !== undefined) throw stoppedRefusal(now);
  if (database !== now.database) throw new Refusal("28000", `airlock: role ${role} may only connect to database ${now.database}`);
  if (client.destroyed || link.ending) throw new Closed();
  if (slotCount(ctx, role) >= now.maxConnections) {
    throw new Refusal("53300", `airlock: session for role ${role} has all ${now.maxConnections} connections in use`);
  }
  takeSlot(ctx, link, role);
  const up = await openUpstream(ctx, link, now, { ...first.params, user: role, database });
  if (client.destroyed || link.ending) throw new Closed();
  await relay(ctx, link, reader, up);
}

/** Turns a failed handshake into what the client sees. */
function refuse(ctx: Context, link: Link, e: unknown): void {
  if (e instanceof Closed || link.client.destroyed) {
    destroyLink(ctx, link);
    return;
  }
  let packet: Buffer;
  if (e instanceof UpstreamRefusal) {
    packet = e.raw;
    ctx.log(`proxy: ${e.message}`);
  } else if (e instanceof Refusal || e instanceof ScramError) {
    const refusal = e instanceof Refusal ? e : clientMalformed(e.message);
    packet = fatalError(refusal.sqlstate, refusal.message);
    ctx.log(`proxy: refused a connection: ${refusal.sqlstate} ${refusal.message}`);
  } else {
    packet = fatalError("XX000", "airlock: internal error in the staging proxy");
    ctx.log(`proxy: internal error: ${e instanceof Error ? e.message : String(e)}`);
  }
  writeTo(link.client, packet);
  link.upstream?.destroy();
  releaseSlot(ctx, link);
  endLink(ctx, link);
}

function accept(ctx: Context, client: Socket): void {
  const link: Link = { client, upstream: undefined, slot: undefined, cancelKey: undefined, timer: undefined, ending: false };
  ctx.links.add(link);
  client.setNoDelay(true);
  client.on("error", () => undefined);
  client.on("close", () => onSocketClosed(ctx, link));
  const timeoutMs = ctx.options.handshakeTimeoutMs ?? 5_000;
  link.timer = setTimeout(() => {
    ctx.log(`proxy: closed a connection whose handshake took over ${timeoutMs} ms${link.slot === undefined ? "" : ` (role ${link.slot})`}`);
    destroyLink(ctx, link);
  }, timeoutMs);
  handshake(ctx, link).catch((e: unknown) => refuse(ctx, link, e));
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off("error", reject);
      const address = server.address();
      resolve(typeof address === "object" && address !== null ? address.port : port);
    });
  });
}

/** Starts the proxy; resolves once it listens. */
export async function startProxy(options: ProxyOptions): Promise<Proxy> {
  const ctx: Context = {
    options,
    upstreamPath: `${options.upstreamSocketDir}/.s.PGSQL.${options.upstreamPort}`,
    // Role names come from unauthenticated clients: no control characters reach the log.
    log: (line) => options.log?.(line.replace(/[\x00-\x1f\x7f]/g, "?")),
    secrets: new SecretCache(),
    links: new Set(),
    slots: new Map(),
    cancelKeys: new Map(),
    cancelSockets: new Set(),
  };
  const server = createServer((socket) => accept(ctx, socket));
  let port: number;
  try {
    port = await listen(server, options.host, options.port);
  } catch (e) {
    throw new AirlockError("AIRLOCK_PROXY_LISTEN_FAILED", `the staging proxy cannot listen on ${options.host}:${options.port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      hint: "choose another port, or stop what holds this one",
      cause: e,
    });
  }
  server.on("error", (e) => ctx.log(`proxy: ${e.message}`));
  return {
    port,
    connections: () => new Map([...ctx.slots].map(([role, set]) => [role, set.size])),
    disconnect(role: string) {
      for (const link of [...(ctx.slots.get(role) ?? [])]) destroyLink(ctx, link);
    },
    close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const link of [...ctx.links]) destroyLink(ctx, link);
      for (const s of [...ctx.cancelSockets]) s.destroy();
      return closed;
    },
  };
}
