import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDataset } from "../../datasets/open.ts";
import { G1, removeDir, tempDir } from "./lerobot/helpers.ts";
import { writeRobomimic } from "./robomimic/fixture.ts";

describe("openDataset", () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await tempDir("actionflow-open-");
  });
  afterAll(() => removeDir(tmp));

  it("opens a LeRobot folder, and refuses reads after close()", async () => {
    const opened = await openDataset(G1);
    expect(opened.format).toBe("lerobot");
    const ds = opened.dataset;
    expect(ds.episodes.length).toBe(10);
    const ep = await ds.readEpisode(0, ["action"]);
    expect(ep.action!.length).toBe(ds.episodes[0]!.length * 26);
    ds.close();
    ds.close();
    await expect(ds.readEpisode(0, ["action"])).rejects.toThrow(/dataset is closed/);
  });

  it("opens a robomimic .hdf5 file with its reader options", async () => {
    const file = join(tmp, "demo.hdf5");
    await writeRobomimic(file);
    const opened = await openDataset(file, { robomimic: { stateKeys: ["robot0_eef_pos"] } });
    expect(opened.format).toBe("robomimic");
    expect(opened.dataset.episodes.length).toBe(3);
    expect(opened.dataset.features["observation.state"]!.shape).toEqual([3]);
    opened.dataset.close();
  });

  it("names the path when it is missing or a file of another kind", async () => {
    await expect(openDataset(join(tmp, "nope"))).rejects.toThrow(/nope: dataset not found/);
    const txt = join(tmp, "notes.txt");
    await writeFile(txt, "hello");
    await expect(openDataset(txt)).rejects.toThrow(
      /notes\.txt: a dataset file must be a robomimic \.hdf5 or \.h5 file/,
    );
  });
});
