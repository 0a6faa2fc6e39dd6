/**
 * The PostgreSQL wire protocol by hand, for what node-pg cannot do
 * (pipelining, malformed packets, cancel requests): message builders and a
 * socket that reads messages as they come.
 */
import { type Socket, connect as connectSocket } from "node:net";
import { expect } from "vitest";

/** A big-endian int32. */
export function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
const cstr = (s: string) => Buffer.from(`${s}\0`);
export const msg = (type: string, body: Buffer) => Buffer.concat([Buffer.from(type), int32(body.length + 4), body]);
export const packet = (body: Buffer) => Buffer.concat([int32(body.length + 4), body]);
export const startupPacket = (params: Record<string, string>, version = 196608) =>
  packet(Buffer.concat([int32(version), ...Object.entries(params).flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.alloc(1)]));
export const sslRequest = () => packet(int32(80877103));
export const gssRequest = () => packet(int32(80877104));
export const cancelRequest = (pid: number, key: number) => packet(Buffer.concat([int32(80877102), int32(pid), int32(key)]));
export const saslInitial = (data: string) => msg("p", Buffer.concat([cstr("SCRAM-SHA-256"), int32(Buffer.byteLength(data)), Buffer.from(data)]));
export const saslResponse = (data: string) => msg("p", Buffer.from(data));
export const simpleQuery = (sql: string) => msg("Q", cstr(sql));

function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of body.toString("utf8").split("\0")) if (f !== "") out[f[0]!] = f.slice(1);
  return out;
}

/** A socket that reads the protocol by hand, for what node-pg cannot do (pipelining, malformed packets). */
export class RawClient {
  private buffer = Buffer.alloc(0);
  private wake: (() => void) | undefined;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, d]);
      this.wake?.();
    });
    socket.on("error", () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.ended = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connectSocket({ host: "127.0.0.1", port });
      s.once("error", reject);
      s.once("connect", () => resolve(new RawClient(s)));
    });
  }

  send(data: Buffer): void {
    this.socket.write(data);
  }

  private async need(n: number): Promise<void> {
    while (this.buffer.length < n) {
      if (this.ended) throw new Error(`connection closed while waiting for ${n} bytes`);
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  async byte(): Promise<string> {
    await this.need(1);
    const b = String.fromCharCode(this.buffer[0]!);
    this.buffer = this.buffer.subarray(1);
    return b;
  }

  async message(): Promise<{ type: string; body: Buffer }> {
    await this.need(5);
    const length = this.buffer.readInt32BE(1);
    await this.need(1 + length);
    const m = { type: String.fromCharCode(this.buffer[0]!), body: this.buffer.subarray(5, 1 + length) };
    this.buffer = this.buffer.subarray(1 + length);
    return m;
  }

  /** The next message, which must be an ErrorResponse; then the connection must close. */
  async fatal(): Promise<Record<string, string>> {
    const m = await this.message();
    expect(m.type).toBe("E");
    await this.closed;
    return errorFields(m.body);
  }
}

/** Reads messages until ReadyForQuery; returns their types and the DataRow texts. */
export async function untilReady(raw: RawClient): Promise<{ types: string[]; rows: string[] }> {
  const types: string[] = [];
  const rows: string[] = [];
  for (;;) {
    const m = await raw.message();
    types.push(m.type);
    if (m.type === "D") rows.push(m.body.subarray(6).toString()); // one column: int16 count, int32 length, value
    if (m.type === "Z") return { types, rows };
  }
}
