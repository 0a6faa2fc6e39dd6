/**
 * Runs the Pulumi program in infra/ under Pulumi's own mocks
 * (`pulumi.runtime.setMocks`): no engine and no CLI, and every resource's
 * inputs recorded as the provider would receive them.
 */
import type pulumiModule from "@pulumi/pulumi";
import type { AirlockStack } from "../../infra/index.ts";

export const CONTAINER = "docker:index/container:Container";
export const NETWORK = "docker:index/network:Network";
export const IMAGE = "docker:index/remoteImage:RemoteImage";

/** A resource the program declared, with the inputs the provider would get. */
export interface Registered {
  readonly type: string;
  readonly name: string;
  readonly inputs: Record<string, unknown>;
}

/** The program runner and the helpers to read what it declared; `mockPort` is the host port the "engine" picks. */
export function pulumiProgramRunner(pulumi: typeof pulumiModule, mockPort: number) {
  const SIG = pulumi.runtime.specialSigKey;
  const SECRET = pulumi.runtime.specialSecretSig;

  function isSecretValue(v: unknown): boolean {
    return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SIG] === SECRET;
  }

  /** The value with every secret wrapper removed. */
  function plain(v: unknown): unknown {
    if (isSecretValue(v)) return plain((v as { value: unknown }).value);
    if (Array.isArray(v)) return v.map(plain);
    if (typeof v === "object" && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
    return v;
  }

  function valueOf<T>(o: pulumiModule.Output<T>): Promise<T> {
    return new Promise((done) => o.apply((v) => done(v)));
  }

  let last: Registered[] = [];

  /** Runs the program under mocks with `config`; returns what reached the "engine" and the program's handles. */
  async function runProgram(
    config: Record<string, string>,
    options: { stack?: string; secretKeys?: string[] } = {},
  ): Promise<{ resources: Registered[]; stack: AirlockStack }> {
    const resources: Registered[] = [];
    last = resources;
    await pulumi.runtime.setMocks(
      {
        newResource(args) {
          resources.push({ type: args.type, name: args.name, inputs: args.inputs as Record<string, unknown> });
          const state: Record<string, unknown> = { ...(args.inputs as Record<string, unknown>) };
          if (args.type === IMAGE) state.imageId = "sha256:0123456789abcdef";
          // Docker picks a free host port when none is given; the mock does the same.
          if (args.type === CONTAINER && state.ports !== undefined) {
            state.ports = (plain(state.ports) as Array<Record<string, unknown>>).map((p) => ({ ...p, external: p.external ?? mockPort }));
          }
          return { id: `${args.name}-id`, state };
        },
        call: () => ({}),
      },
      "airlock",
      options.stack ?? "mock-stack",
      false,
    );
    pulumi.runtime.setAllConfig(config, options.secretKeys);
    // Imported only now, with the mocks in place (the module itself declares nothing).
    const { airlockStack } = await import("../../infra/index.ts");
    const stack = airlockStack();
    await Promise.all([valueOf(stack.outputs.agentUrl), valueOf(stack.outputs.expiresAt), valueOf(stack.outputs.port)]);
    return { resources, stack };
  }

  return { runProgram, isSecretValue, plain, valueOf, lastResources: (): readonly Registered[] => last };
}
