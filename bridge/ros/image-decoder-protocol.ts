/** Messages between an {@link ImageDecoder} (the link's thread) and its worker thread. */

/** Main -> worker: one camera message to decode, and the size to resize it to. */
export interface DecodeRequest {
  id: number;
  /** The message as rosbridge delivered it (`sensor_msgs/Image` or `CompressedImage`). */
  msg: unknown;
  transport: "raw" | "compressed";
  /** Names the topic and feature in errors. */
  what: string;
  width: number;
  height: number;
}

/** Worker -> main: the RGB image `[height, width, 3]`, or why it could not be decoded. */
export type DecodeReply =
  { id: number; ok: true; width: number; height: number; rgb: Uint8Array } | { id: number; ok: false; error: string };

/** Parses a request (from `unknown`); throws a `TypeError` naming what is wrong. */
export function parseDecodeRequest(m: unknown): DecodeRequest {
  const o = (typeof m === "object" && m !== null ? m : {}) as Record<string, unknown>;
  if (
    typeof o["id"] !== "number" ||
    (o["transport"] !== "raw" && o["transport"] !== "compressed") ||
    typeof o["what"] !== "string" ||
    !Number.isInteger(o["width"]) ||
    !Number.isInteger(o["height"])
  )
    throw new TypeError("camera decoder got a request without id, transport, what, width and height");
  return m as DecodeRequest;
}

/** Parses a reply (from `unknown`); throws a `TypeError` naming what is wrong. */
export function parseDecodeReply(m: unknown): DecodeReply {
  const o = (typeof m === "object" && m !== null ? m : {}) as Record<string, unknown>;
  if (typeof o["id"] !== "number") throw new TypeError("camera decoder sent a reply without an id");
  if (
    o["ok"] === true &&
    o["rgb"] instanceof Uint8Array &&
    Number.isInteger(o["width"]) &&
    Number.isInteger(o["height"])
  )
    return m as DecodeReply;
  if (o["ok"] === false && typeof o["error"] === "string") return m as DecodeReply;
  throw new TypeError("camera decoder sent a reply that is neither {ok, rgb, width, height} nor {ok: false, error}");
}
