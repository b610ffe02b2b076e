/**
 * CURVE security for the ZeroMQ server: a ZAP handler that admits only allow-listed client keys.
 *
 * libzmq asks the ZAP handler of the socket's context (a socket bound to `inproc://zeromq.zap.01`)
 * about every handshake. Without one, a CURVE server accepts ANY client keypair (checked against libzmq), so
 * CURVE alone only encrypts. Request frames: `[routing id, "", "1.0", request id, domain, address,
 * identity, mechanism, ...credentials]` (a CURVE credential is the client's 32-byte public key);
 * reply `[routing id, "", "1.0", request id, "200" | "400", status text, user id, metadata]`.
 * One handler per context: the server makes its own context.
 */
import * as zmq from "zeromq";
import { z } from "zod";
import { readJsonFile } from "../../policy/io/json.ts";

const Z85_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/** Z85-encodes bytes (length a multiple of 4), as ZeroMQ writes CURVE keys. */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new Error(`z85: ${bytes.length} bytes is not a multiple of 4`);
  let out = "";
  for (let i = 0; i < bytes.length; i += 4) {
    let v = ((bytes[i]! << 24) >>> 0) + (bytes[i + 1]! << 16) + (bytes[i + 2]! << 8) + bytes[i + 3]!;
    const chunk: string[] = [];
    for (let k = 0; k < 5; k++) {
      chunk.unshift(Z85_CHARS[v % 85]!);
      v = Math.floor(v / 85);
    }
    out += chunk.join("");
  }
  return out;
}

/** True for a 40-character Z85 CURVE key. */
export function isZ85Key(key: string): boolean {
  return key.length === 40 && [...key].every((c) => Z85_CHARS.includes(c));
}

/** A 40-character Z85 CURVE key. */
const Z85KeySchema = z.string().refine(isZ85Key, "expected a 40-character Z85 key");

/** A CURVE keypair, Z85 (40 characters each): what `actionflow keys --out` writes as `<name>.key`. */
export const CurveKeyPairSchema = z.object({ publicKey: Z85KeySchema, secretKey: Z85KeySchema });
/** See {@link CurveKeyPairSchema}. */
export type CurveKeyPair = z.infer<typeof CurveKeyPairSchema>;

/** Reads a keypair file made by `actionflow keys --out`; errors name the file and the field. */
export function readCurveKeyPair(path: string): Promise<CurveKeyPair> {
  return readJsonFile(path, CurveKeyPairSchema, {
    missing: "a keypair file from `actionflow keys --out`",
    invalid: "not a keypair file from `actionflow keys --out`",
  });
}

/** A new CURVE keypair (libzmq's generator). */
export function curveKeyPair(): CurveKeyPair {
  return zmq.curveKeyPair();
}

/** One handshake the handler decided. */
export interface ZapDecision {
  /** The client's public key (Z85), or null for a non-CURVE handshake. */
  clientKey: string | null;
  address: string;
  allowed: boolean;
}

/** Options of {@link ZapHandler}. */
export interface ZapHandlerOptions {
  /** The context whose handshakes to authenticate (the server socket's). */
  context: zmq.Context;
  /** Client public keys (Z85) allowed in. */
  allow: readonly string[];
  /** Called after each decision (logging, tests). */
  onDecision?: (d: ZapDecision) => void;
}

/** A ZAP handler admitting only allow-listed CURVE client keys. Start it before the server binds. */
export class ZapHandler {
  private readonly socket: zmq.Router;
  private readonly allow: Set<string>;
  private loop: Promise<void> | undefined;

  constructor(private readonly opts: ZapHandlerOptions) {
    for (const k of opts.allow)
      if (!isZ85Key(k)) throw new Error(`allow-list key '${k}' is not a 40-character Z85 key`);
    this.allow = new Set(opts.allow);
    this.socket = new zmq.Router({ context: opts.context, linger: 0 });
  }

  /** Binds `inproc://zeromq.zap.01` and starts answering. */
  async start(): Promise<void> {
    await this.socket.bind("inproc://zeromq.zap.01");
    this.loop = this.run();
  }

  /** Stops answering (handshakes then fail). */
  async close(): Promise<void> {
    this.socket.close();
    await this.loop;
  }

  private async run(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        const [rid, , version, reqId, , address, , mechanism, cred] = frames;
        if (!rid || !reqId) continue;
        const mech = mechanism?.toString() ?? "";
        const key = mech === "CURVE" && cred && cred.length === 32 ? z85Encode(cred) : null;
        const allowed = version?.toString() === "1.0" && key !== null && this.allow.has(key);
        this.opts.onDecision?.({ clientKey: key, address: address?.toString() ?? "", allowed });
        await this.socket.send([
          rid,
          "",
          "1.0",
          reqId,
          allowed ? "200" : "400",
          allowed ? "OK" : key ? "client key not on the allow-list" : `mechanism ${mech} refused`,
          allowed ? key : "",
          "",
        ]);
      }
    } catch (err) {
      if (!this.socket.closed) throw err;
    }
  }
}
