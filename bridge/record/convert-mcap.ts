/**
 * The MCAP message source of `dataset convert` (ROS 2 bags and run logs: `ros2msg` schemas, CDR):
 * read through the file's index, or record by record up to the cut for a log a crash left without
 * its summary. Messages decode with the channel's schema into rosbridge's ROS 2 layout.
 */
import { readFile } from "node:fs/promises";
import { McapIndexedReader, McapStreamReader, type TypedMcapRecords } from "@mcap/core";
import { parse as parseDefinition } from "@foxglove/rosmsg";
import { MessageReader } from "@foxglove/rosmsg2-serialization";
import { plain, shortTypeName, type MessageSource, type RecordedMessage } from "./source.ts";

type McapMessage = TypedMcapRecords["Message"];

/** An indexed reader over an MCAP file held in memory (throws when it has no summary or index). */
export function openMcapBytes(bytes: Uint8Array): Promise<McapIndexedReader> {
  return McapIndexedReader.Initialize({
    readable: {
      size: async () => BigInt(bytes.length),
      read: async (offset, length) => bytes.subarray(Number(offset), Number(offset + length)),
    },
  });
}

/** Reads every message of the file: through the index, or record by record for a file cut short. */
async function readMessages(path: string): Promise<{
  channels: Map<number, { topic: string; schema: string; encoding: string; data: Uint8Array }>;
  messages: McapMessage[];
}> {
  const bytes = new Uint8Array(await readFile(path));
  const channels = new Map<number, { topic: string; schema: string; encoding: string; data: Uint8Array }>();
  const messages: McapMessage[] = [];
  try {
    const reader = await openMcapBytes(bytes);
    for (const c of reader.channelsById.values()) {
      const s = reader.schemasById.get(c.schemaId);
      channels.set(c.id, {
        topic: c.topic,
        schema: s?.name ?? "",
        encoding: s?.encoding ?? "",
        data: s?.data ?? new Uint8Array(),
      });
    }
    for await (const m of reader.readMessages()) messages.push(m);
    return { channels, messages };
  } catch {
    // no summary or index (a log cut short by a crash): read the records in order up to the cut
    const schemas = new Map<number, TypedMcapRecords["Schema"]>();
    const stream = new McapStreamReader({ validateCrcs: true });
    stream.append(bytes);
    for (;;) {
      let r: ReturnType<McapStreamReader["nextRecord"]>;
      try {
        r = stream.nextRecord();
      } catch {
        break; // a truncated record at the end
      }
      if (r === undefined) break;
      if (r.type === "Schema") schemas.set(r.id, r);
      else if (r.type === "Channel") {
        const s = schemas.get(r.schemaId);
        channels.set(r.id, {
          topic: r.topic,
          schema: s?.name ?? "",
          encoding: s?.encoding ?? "",
          data: s?.data ?? new Uint8Array(),
        });
      } else if (r.type === "Message") messages.push(r);
    }
    if (channels.size === 0) throw new Error(`${path}: not an MCAP file, or no channel before the cut`);
    messages.sort((a, b) => (a.logTime < b.logTime ? -1 : a.logTime > b.logTime ? 1 : 0));
    return { channels, messages };
  }
}

/** Opens an MCAP file (read whole into memory) as a {@link MessageSource}. */
export async function openMcapSource(path: string): Promise<MessageSource> {
  const { channels, messages } = await readMessages(path);
  const topics = new Map<string, string>();
  for (const c of channels.values()) topics.set(c.topic, shortTypeName(c.schema));
  const readers = new Map<number, MessageReader>();
  const reader = (id: number): MessageReader => {
    let r = readers.get(id);
    if (!r) {
      const c = channels.get(id)!;
      if (c.encoding !== "ros2msg")
        throw new Error(`${path}: topic ${c.topic} has schema encoding '${c.encoding}', expected ros2msg (CDR)`);
      r = new MessageReader(parseDefinition(new TextDecoder().decode(c.data), { ros2: true }));
      readers.set(id, r);
    }
    return r;
  };
  return {
    file: path,
    format: "mcap",
    topics,
    close: async () => undefined, // read whole at open
    async *messages(wanted: ReadonlySet<string>): AsyncIterable<RecordedMessage> {
      for (const m of messages) {
        const topic = channels.get(m.channelId)?.topic as string;
        if (!wanted.has(topic)) continue;
        yield {
          topic,
          logTimeS: Number(m.logTime) / 1e9,
          decode: () => {
            try {
              return plain(reader(m.channelId).readMessage(m.data)) as Record<string, unknown>;
            } catch (err) {
              throw new Error(`CDR: ${(err as Error).message}`, { cause: err });
            }
          },
        };
      }
    },
  };
}
