/**
 * The camera decoder's worker thread ({@link ImageDecoder}): parses one camera message at a time
 * (`sensor_msgs/Image` or `CompressedImage`: base64, JPEG and PNG decoding), resizes it to the
 * camera's profile size and sends the RGB bytes back, transferred.
 */
import { parentPort } from "node:worker_threads";
import { parseCameraMessage, resizeRgb } from "./protocol.ts";
import { parseDecodeRequest, type DecodeReply } from "./image-decoder-protocol.ts";

const port = parentPort;
if (!port) throw new Error("image-decoder-worker.ts must run in a worker thread");

port.on("message", (raw: unknown) => {
  let reply: DecodeReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const req = parseDecodeRequest(raw);
    const r = parseCameraMessage(req.msg, req.transport, req.what);
    if (r.kind === "error") reply = { id: req.id, ok: false, error: r.error };
    else {
      const rgb = resizeRgb(r.value, req.width, req.height);
      const own = rgb.byteLength === rgb.buffer.byteLength ? rgb : rgb.slice();
      reply = { id: req.id, ok: true, width: req.width, height: req.height, rgb: own };
      transfer = [own.buffer as ArrayBuffer];
    }
  } catch (err) {
    const id = typeof raw === "object" && raw !== null ? Number((raw as { id?: unknown }).id) : -1;
    reply = { id, ok: false, error: `camera decoder: ${(err as Error).message}` };
  }
  port.postMessage(reply, transfer);
});
