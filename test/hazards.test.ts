/**
 * Hazard rules as functions of a table's changes, without a cluster: how
 * updates are counted per column for a whole-column overwrite (the diff of a
 * real `UPDATE … SET title = 'x'` is in test/wild-data.test.ts).
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/config.ts";
import { tableHazards } from "../src/diff/hazards.ts";
import type { RowChange, TableChanges } from "../src/diff/types.ts";

describe("a whole-column overwrite is a danger", () => {
  it("counts rows per column: past bulkRows or bulkFraction in one column is danger; many rows each in other columns, or few rows, is not", () => {
    const limits = parseConfig({ hazards: { bulkRows: 50, bulkFraction: 0.1 } }).hazards;
    const table = (rowsBefore: number, changes: RowChange[]): TableChanges => ({
      schema: "public",
      name: "t",
      columns: [],
      key: ["id"],
      keyKind: "primary",
      rowsBefore,
      changes,
    });
    const update = (i: number, col: string): RowChange => ({ kind: "update", key: { id: String(i) }, old: { [col]: "a" }, new: { [col]: "b" } });
    const codes = (t: TableChanges) => tableHazards(t, limits, null).map((h) => `${h.severity}:${h.code}`);
    // 51 rows of 10,000 in one column: past bulkRows.
    expect(
      codes(
        table(
          10_000,
          Array.from({ length: 51 }, (_, i) => update(i, "title")),
        ),
      ),
    ).toEqual(["danger:BULK_OVERWRITE"]);
    // 11 of 100 rows: past bulkFraction.
    expect(
      codes(
        table(
          100,
          Array.from({ length: 11 }, (_, i) => update(i, "title")),
        ),
      ),
    ).toEqual(["danger:BULK_OVERWRITE"]);
    // 10 of 100: at the fraction, not past it.
    expect(
      codes(
        table(
          100,
          Array.from({ length: 10 }, (_, i) => update(i, "title")),
        ),
      ),
    ).toEqual([]);
    // 60 rows of 10,000, 30 in each of two columns: many updates, no column overwritten.
    expect(
      codes(
        table(
          10_000,
          Array.from({ length: 60 }, (_, i) => update(i, i % 2 === 0 ? "title" : "category")),
        ),
      ),
    ).toEqual(["warn:BULK_UPDATE"]);
  });
});
