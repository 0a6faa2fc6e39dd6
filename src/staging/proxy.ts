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
import { type Server, type Socket, connect as connectSocket, createServer } from "node:net";
import { AirlockError } from "../errors.ts";
import { type AuthContext, SecretCache, authenticateClient, openUpstream } from "./proxy-auth.ts";
import { type Link, destroyLink, endLink, onSocketClosed, releaseSlot, slotCount, takeSlot } from "./proxy-links.ts";
import {
  Closed,
  MAX_UPSTREAM_STARTUP_MESSAGE,
  PacketReader,
  Refusal,
  UpstreamRefusal,
  clientMalformed,
  fatalError,
  negotiateProtocolVersion,
  readFirstPacket,
  writeTo,
} from "./proxy-wire.ts";
import { ScramError } from "./scram.ts";

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

/** The running proxy's state. */
interface Context extends AuthContext {
  readonly options: ProxyOptions;
  readonly cancelSockets: Set<Socket>;
}

function stoppedRefusal(session: ProxySession): Refusal {
  const text = session.stopped ?? "";
  return new Refusal("57P03", text.startsWith("airlock: ") ? text : `airlock: ${text}`);
}

function noSession(role: string): Refusal {
  return new Refusal("28000", `airlock: no session for role ${role}`);
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
    throw new AirlockError(
      "AIRLOCK_PROXY_LISTEN_FAILED",
      `the staging proxy cannot listen on ${options.host}:${options.port}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      {
        hint: "choose another port, or stop what holds this one",
        cause: e,
      },
    );
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
