/**
 * The one small interface every staging backend implements (the embedded
 * local cluster, the Pulumi program). Everything else in Airlock talks only
 * to this interface: sessions, `airlock run`, diff and replay.
 */
import type { PgTarget } from "../pg/connect.ts";
import type { SnapshotManifest } from "../snapshot/store.ts";

/** Which backend holds a session. */
export type BackendKind = "local" | "docker" | "pulumi";

/** Limits put on the agent's role. */
export interface AgentLimits {
  /** CONNECTION LIMIT of the agent's role. */
  readonly connectionLimit: number;
  /** Statement time, in ms (a role-level statement_timeout, and the local supervisor cancels past it). */
  readonly statementTimeoutMs: number;
  /** Disk the work database may use (and each temporary file); default: 4× the snapshot's restored size, at least 1 GB. */
  readonly diskQuotaBytes?: number;
}

/**
 * What a backend is doing while it provisions a session, for a person waiting: `restore` the snapshot (into the
 * local cluster's template, once per snapshot, by compressed bytes read; or in the session's container), `check`
 * the restored catalog against production's, `container` (creating and starting the session's container), `copy`
 * (the template into the session's base and work databases).
 */
export type ProvisionProgress =
  | { readonly phase: "container" | "check" | "copy" }
  | {
      readonly phase: "restore";
      readonly into: "template" | "container";
      /** Local restores only: how far it is (compressed bytes), the part of it running, and the table loading. */
      readonly bytes?: number;
      readonly totalBytes?: number;
      readonly section?: string;
      readonly table?: string;
    };

/** What a backend needs to provision a session. */
export interface ProvisionRequest {
  readonly sessionId: string;
  readonly snapshot: { readonly dir: string; readonly manifest: SnapshotManifest };
  readonly limits: AgentLimits;
  /** When the session expires (ISO time), or null when kept. */
  readonly expiresAt: string | null;
  /** Told each phase as it starts (and a restore's progress). */
  readonly onProgress?: (p: ProvisionProgress) => void;
}

/** Where the agent connects. The password is the agent's own, random per session. */
export interface AgentEndpoint {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
}

/** What a backend returns for a provisioned session. */
export interface Provisioned {
  readonly agent: AgentEndpoint;
  /** Backend-specific facts to keep in the session record (never a password). */
  readonly backendState: Readonly<Record<string, string | number | boolean | null>>;
}

/** A staging backend. */
export interface StagingBackend {
  readonly kind: BackendKind;
  /** Fails at once, with what is missing, when this backend cannot run on this machine. */
  checkAvailable(): Promise<void>;
  /** Creates the session's `base` (restored snapshot, never handed out) and `work` (the agent's) databases and the agent's role. */
  provision(request: ProvisionRequest): Promise<Provisioned>;
  /** A superuser connection to the session's base or work database. */
  adminTarget(sessionId: string, backendState: Provisioned["backendState"], which: "base" | "work"): Promise<PgTarget>;
  /** Destroys everything the session had: connections, databases, role (or the whole stack). */
  destroy(sessionId: string, backendState: Provisioned["backendState"]): Promise<void>;
}

/** The role settings Airlock puts on an agent's role (not part of the agent's catalog model). */
export function imposedAgentSettings(limits: Pick<AgentLimits, "statementTimeoutMs" | "diskQuotaBytes">): string[] {
  return [
    `statement_timeout=${Math.trunc(limits.statementTimeoutMs)}`,
    ...(limits.diskQuotaBytes === undefined ? [] : [`temp_file_limit=${Math.ceil(limits.diskQuotaBytes / 1024)}`]),
  ];
}
