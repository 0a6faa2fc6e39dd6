/**
 * `airlock review <diff>`: opens a diff's review page in the browser, on any
 * OS, and prints it as a file:// URL, which works without a desktop too.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Command } from "commander";
import { diffsDir, resolveDiffId } from "../src/diff/store.ts";
import { AirlockError } from "../src/errors.ts";
import { openFile } from "../src/os/open-file.ts";
import { globalFlags, projectFor } from "./context.ts";
import { say, sayJson, warn } from "./output.ts";

/** Registers the command. */
export function registerReview(program: Command): void {
  program
    .command("review <diff>")
    .description("open a diff's review page (review.html) in the browser, and print it as a file:// URL")
    .option("--no-open", "only print where the page is")
    .addHelpText(
      "after",
      `
The page is one self-contained file, .airlock/diffs/<id>/review.html: danger
hazards first with their definitions, then schema changes and rows. It opens
with xdg-open on Linux (in a desktop session), open on macOS and start on
Windows, never waited on; the URL is printed in any case, for a login over SSH
or a machine without a desktop (copy the file anywhere to read it).
Diff ids may be shortened to a unique prefix of 8+ characters.

Examples:
  airlock review 3f9a2c1b
  airlock review 3f9a2c1b --no-open      # only print the file:// URL`,
    )
    .action(async (idArg: string, opts: { open: boolean }, cmd: Command) => {
      const project = await projectFor(cmd);
      const id = resolveDiffId(project, idArg);
      const dir = join(diffsDir(project), id);
      const path = join(dir, "review.html");
      if (!existsSync(path))
        throw new AirlockError("AIRLOCK_DIFF_NOT_FOUND", `diff ${id} has no review page: ${path} is missing`, {
          hint: `its other files are in ${dir} (review.md says the same in Markdown)`,
        });
      const url = pathToFileURL(path).href;
      const opened = opts.open ? openFile(path) : undefined;
      if (globalFlags(cmd).json) return sayJson({ id, path, url });
      say(url);
      if (opened === undefined) return;
      if (opened.opened) warn(`airlock: opening the review page of diff ${id} with ${opened.opener}`);
      else warn(`airlock: not opened: ${opened.reason}; open the URL above in a browser (the page is one file: copy it anywhere to read it)`);
    });
}
