/**
 * The staging proxy's connections: each client socket and, once
 * authenticated, its upstream leg, the per-role slots that cap a session's
 * connections, and how a link ends (flushed, then destroyed after a grace
 * period; its slot is free only once upstream is gone).
 */
import type { Socket } from "node:net";

// How long a closing side gets to flush what it still has to write.
const CLOSE_GRACE_MS = 2_000;

/** One client connection and, once authenticated, its upstream leg. */
export interface Link {
  readonly client: Socket;
  upstream: Socket | undefined;
  /** Set once the client is authenticated and holds one of its session's slots. */
  slot: string | undefined;
  cancelKey: string | undefined;
  /** The handshake deadline, then the close grace period. */
  timer: NodeJS.Timeout | undefined;
  ending: boolean;
}

/** Every connection of the proxy, and the authenticated ones by role (slots) and by cancel key. */
export interface Links {
  readonly links: Set<Link>;
  readonly slots: Map<string, Set<Link>>;
  readonly cancelKeys: Map<string, Link>;
}

/** How many slots a role's connections hold. */
export function slotCount(ctx: Links, role: string): number {
  return ctx.slots.get(role)?.size ?? 0;
}

/** Counts the link against its role's connections. */
export function takeSlot(ctx: Links, link: Link, role: string): void {
  let set = ctx.slots.get(role);
  if (set === undefined) ctx.slots.set(role, (set = new Set()));
  set.add(link);
  link.slot = role;
}

/** Gives the link's slot back; safe to call any number of times. */
export function releaseSlot(ctx: Links, link: Link): void {
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
export function destroyLink(ctx: Links, link: Link): void {
  releaseSlot(ctx, link);
  for (const s of sockets(link)) s.destroy();
}

/**
 * Ends both sides, letting what was written flush; destroys them after a grace period. The slot stays
 * taken until the upstream leg is gone: until then Postgres may still hold the backend.
 */
export function endLink(ctx: Links, link: Link): void {
  if (link.ending) return;
  link.ending = true;
  clearTimeout(link.timer);
  for (const s of sockets(link)) s.end();
  link.timer = setTimeout(() => destroyLink(ctx, link), CLOSE_GRACE_MS);
}

/** Either side closed: the connection is over; its slot is free once upstream is gone, the link once both are. */
export function onSocketClosed(ctx: Links, link: Link): void {
  if (link.upstream === undefined || link.upstream.destroyed) releaseSlot(ctx, link);
  if (sockets(link).every((s) => s.destroyed)) {
    clearTimeout(link.timer);
    ctx.links.delete(link);
    return;
  }
  endLink(ctx, link);
}
