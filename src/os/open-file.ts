/**
 * Opening a file with the desktop's default application (a review page in
 * the browser): `open` on macOS, `start` on Windows, `xdg-open` elsewhere.
 * The opener is started detached and never waited on; a machine without
 * one, or without a desktop session (an SSH login, a container), opens
 * nothing and says why, so the caller can still print where the file is.
 */
import { spawn } from "node:child_process";
import { findOnPath } from "./executables.ts";

/** What opening a file did: the opener started, or why none was. */
export type OpenResult = { readonly opened: true; readonly opener: string } | { readonly opened: false; readonly reason: string };

/** The command that opens `file` on `platform`, or why there is none. */
export function openerFor(
  file: string,
  platform: NodeJS.Platform = process.platform,
  env: NodeJS.ProcessEnv = process.env,
): { command: string; args: string[]; windowsVerbatimArguments?: boolean } | { reason: string } {
  if (platform === "win32") {
    // `start` is built into cmd; its first quoted argument is a window title, hence the empty one. With /s, cmd
    // drops the quotes around the whole command line, as Node quotes it for `shell: true`.
    return { command: env.ComSpec ?? "cmd.exe", args: ["/d", "/s", "/c", `"start "" "${file}""`], windowsVerbatimArguments: true };
  }
  if (platform === "darwin") return findOnPath("open", env) === undefined ? { reason: "no `open` command on PATH" } : { command: "open", args: [file] };
  // xdg-open without a desktop would fall back to a text browser with no terminal to draw on.
  if ((env.DISPLAY ?? "") === "" && (env.WAYLAND_DISPLAY ?? "") === "") return { reason: "no desktop session here (DISPLAY and WAYLAND_DISPLAY are unset)" };
  return findOnPath("xdg-open", env) === undefined ? { reason: "no xdg-open on PATH" } : { command: "xdg-open", args: [file] };
}

/** Starts the desktop's opener on `file` and returns at once: never waits on it, never fails because of it. */
export function openFile(file: string, env: NodeJS.ProcessEnv = process.env): OpenResult {
  const how = openerFor(file, process.platform, env);
  if ("reason" in how) return { opened: false, reason: how.reason };
  try {
    const child = spawn(how.command, how.args, {
      detached: true,
      stdio: "ignore",
      env,
      windowsHide: true,
      ...(how.windowsVerbatimArguments === true ? { windowsVerbatimArguments: true } : {}),
    });
    // An opener that cannot start reports it asynchronously; there is nothing left to do about it by then.
    child.on("error", () => undefined);
    child.unref();
    return { opened: true, opener: how.command };
  } catch (e) {
    return { opened: false, reason: `${how.command} did not start: ${(e as Error).message}` };
  }
}
