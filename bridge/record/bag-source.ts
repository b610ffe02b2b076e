/**
 * The ROS 1 bag (`.bag`, format 2.0) message source of `dataset convert`: `@foxglove/rosbag` reads
 * the file through its index (connections and chunk infos at the end), and each message decodes
 * with `@foxglove/rosmsg-serialization` from the definition its connection carries
 * (`message_definition`), into rosbridge's ROS 1 layout (time and duration `{secs, nsecs}`).
 *
 * A bag cut short (its index never written, or part of it missing) does not open: the error says so
 * and names `rosbag reindex`, which rebuilds the index. Compressed chunks (`rosbag record --bz2`,
 * `--lz4`) decompress with Foxglove's WebAssembly builds of bzip2 and lz4.
 */
import { Bag } from "@foxglove/rosbag";
import { FileReader } from "@foxglove/rosbag/node";
import { parse as parseDefinition } from "@foxglove/rosmsg";
import { MessageReader } from "@foxglove/rosmsg-serialization";
import Bzip2 from "@foxglove/wasm-bz2";
import decompressLz4 from "@foxglove/wasm-lz4";
import type { MessageSource, RecordedMessage } from "./source.ts";

type MessageDefinition = ReturnType<typeof parseDefinition>[number];

/**
 * A function from a decoded ROS 1 message (the reader's `{sec, nsec}` times, typed arrays) to the
 * layout rosbridge delivers (`{secs, nsecs}`, plain arrays), walking the message's definitions.
 */
export function ros1Layout(defs: readonly MessageDefinition[]): (msg: unknown) => Record<string, unknown> {
  const byName = new Map<string, MessageDefinition>();
  for (const d of defs.slice(1)) if (d.name !== undefined) byName.set(d.name, d);
  const root = defs[0];
  if (root === undefined) throw new Error("ROS 1 message definition: empty");
  const walk = (def: MessageDefinition, v: unknown): Record<string, unknown> => {
    const m = (v ?? {}) as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const f of def.definitions) {
      if (f.isConstant === true) continue;
      const one = (x: unknown): unknown => {
        if (f.type === "time" || f.type === "duration") {
          const t = x as { sec: number; nsec: number };
          return { secs: t.sec, nsecs: t.nsec };
        }
        if (f.isComplex === true) {
          const d = byName.get(f.type);
          if (d === undefined) throw new Error(`ROS 1 message definition: no type ${f.type}`);
          return walk(d, x);
        }
        return x;
      };
      const x = m[f.name];
      out[f.name] = f.isArray === true ? Array.from(x as ArrayLike<unknown>, one) : one(x);
    }
    return out;
  };
  return (msg) => walk(root, msg);
}

let bzip2: Promise<Bzip2> | undefined;

/** The chunk decompressors of ROS 1 bags (`bz2`, `lz4`: the frame format of roslz4), loaded once. */
async function decompressors(): Promise<Record<string, (data: Uint8Array, size: number) => Uint8Array>> {
  const bz2 = await (bzip2 ??= Bzip2.init());
  await decompressLz4.isLoaded;
  return {
    bz2: (data, size) => bz2.decompress(data, size, { small: false }),
    lz4: (data, size) => decompressLz4(data, size),
  };
}

/** Opens a ROS 1 bag as a {@link MessageSource}; errors name the file. */
export async function openBagSource(path: string): Promise<MessageSource> {
  const file = new FileReader(path);
  const bag = new Bag(file, { parse: false, decompress: await decompressors() });
  const reindex = "a bag cut short by a crash has no index: `rosbag reindex` rebuilds it";
  try {
    const header = await bag.reader.readHeader();
    if (header.indexPosition === 0 || header.indexPosition >= file.size())
      throw new Error(
        `${path}: the ROS 1 bag's index (at byte ${header.indexPosition}) is not in the file (${file.size()} bytes); ${reindex}`,
      );
    await bag.open();
  } catch (err) {
    await file.close().catch(() => undefined);
    const why = (err as Error).message;
    if (why.startsWith(path)) throw err;
    throw new Error(
      /ENOENT/.test(why) ? `${path}: no such file` : `${path}: not a readable ROS 1 bag (${why}); ${reindex}`,
      { cause: err },
    );
  }
  const topics = new Map<string, string>();
  for (const c of bag.connections.values()) {
    const type = c.type ?? "";
    const had = topics.get(c.topic);
    topics.set(c.topic, had === undefined || had === type ? type : `${had} and ${type}`);
  }
  const decoders = new Map<number, (data: Uint8Array) => Record<string, unknown>>();
  const decoder = (conn: number): ((data: Uint8Array) => Record<string, unknown>) => {
    let d = decoders.get(conn);
    if (!d) {
      const c = bag.connections.get(conn);
      if (!c) throw new Error(`${path}: a message of connection ${conn}, which the bag does not declare`);
      const defs = parseDefinition(c.messageDefinition);
      const reader = new MessageReader(defs);
      const layout = ros1Layout(defs);
      d = (data) => layout(reader.readMessage(data));
      decoders.set(conn, d);
    }
    return d;
  };
  return {
    file: path,
    format: "bag",
    topics,
    async *messages(wanted: ReadonlySet<string>): AsyncIterable<RecordedMessage> {
      if (bag.startTime === undefined) return; // no chunk: no message
      try {
        for await (const m of bag.messageIterator({ topics: [...wanted] })) {
          yield {
            topic: m.topic,
            logTimeS: m.timestamp.sec + m.timestamp.nsec / 1e9,
            decode: () => {
              try {
                return decoder(m.connectionId)(m.data);
              } catch (err) {
                throw new Error(`ROS 1 message (${topics.get(m.topic)}): ${(err as Error).message}`, { cause: err });
              }
            },
          };
        }
      } catch (err) {
        throw new Error(`${path}: reading the bag's chunks failed: ${(err as Error).message}`, { cause: err });
      }
    },
    close: () => file.close(),
  };
}
