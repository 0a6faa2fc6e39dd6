/**
 * SCRAM-SHA-256 on both legs of a proxied connection: as the server towards
 * the agent (with the session's password), and as a client towards the
 * staging cluster's Unix socket (with the same password). PBKDF2 runs once
 * per role and password, not per connection.
 */
import { randomBytes } from "node:crypto";
import { type Socket, connect as connectSocket } from "node:net";
import { type Link, type Links, onSocketClosed } from "./proxy-links.ts";
import {
  AUTH_OK,
  AUTH_SASL,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  MAX_CLIENT_AUTH_MESSAGE,
  MAX_UPSTREAM_STARTUP_MESSAGE,
  PacketReader,
  Refusal,
  UpstreamRefusal,
  authRequest,
  clientMalformed,
  cstring,
  cstrings,
  int32,
  message,
  startupMessage,
  upstreamMalformed,
  writeTo,
} from "./proxy-wire.ts";
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

/**
 * SCRAM secrets, so PBKDF2 runs once per role and password, not per connection:
 * the server half with one random salt per role for the proxy's lifetime, the
 * client half for the salt and iteration count Postgres has stored.
 */
export class SecretCache {
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

/** Whom a connection authenticates as: a session's role and password. */
export interface Credentials {
  readonly role: string;
  readonly password: string;
}

/** What authentication needs of the proxy. */
export interface AuthContext extends Links {
  /** The cluster's Unix socket. */
  readonly upstreamPath: string;
  readonly log: (line: string) => void;
  readonly secrets: SecretCache;
}

/** Server-side SCRAM-SHA-256 with the session's password; ends with AuthenticationSASLFinal sent. */
export async function authenticateClient(ctx: AuthContext, reader: PacketReader, client: Socket, session: Credentials): Promise<void> {
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
function connectUpstream(ctx: AuthContext, link: Link): Promise<Socket> {
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
export async function openUpstream(
  ctx: AuthContext,
  link: Link,
  session: Credentials,
  params: Record<string, string>,
): Promise<{ upstream: Socket; reader: PacketReader; authOk: Buffer }> {
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
      if (!upstreamScram(() => checkServerFinal(data.toString("utf8"), proof!)))
        throw new Refusal("08006", "airlock: the staging server's SCRAM signature did not verify");
    } else {
      throw new Refusal(
        "08004",
        `airlock: the staging server asked for authentication method ${code}; the proxy supports only SCRAM-SHA-256 (or trust) on the socket`,
      );
    }
  }
}
