/**
 * The openpi WebSocket policy protocol (openpi `websocket_policy_server.py` / `openpi-client`), as
 * actionflow serves it: binary frames of msgpack-numpy.
 *
 * | direction | frame                                                                               |
 * |-----------|-------------------------------------------------------------------------------------|
 * | on connect, server -> client | binary: the metadata `{features, horizon, action_dim, fps, rtc_max_delay, solver, steps, key_map}` |
 * | client -> server | binary: one observation dict of ONE sample (no batch dim): `{<feature key>: array, ...}`; other keys (`prompt`, unused images) are ignored |
 * | | a camera: uint8 `(h, w, 3)` under its key, its slash form (`observation/images/front`), its model name or, for a one-camera policy, `observation/image`; resized with padding to the policy's size |
 * | server -> client | binary: `{actions: (H, A) float32, policy_timing: {infer_ms}, server_timing: {infer_ms, prev_total_ms}}` (`prev_total_ms` from the second reply on) |
 * | on error, server -> client | text: the error, then close 1011 (that client only) |
 *
 * A text frame from the client is an error too (openpi clients only send binary).
 */
import type { NdArray } from "../codec/msgpack-numpy.ts";
import { isMsgMap, type MsgMap, type MsgValue } from "../codec/msgpack-numpy.ts";
import { BadRequestError } from "./served-policy.ts";

/** One reply. */
export interface OpenpiReply {
  [key: string]: MsgValue;
  /** `(H, A)` float32 raw actions. */
  actions: NdArray;
  policy_timing: { infer_ms: number };
  server_timing: { infer_ms: number; prev_total_ms?: number };
}

/** The observation dict of a decoded request; throws {@link BadRequestError} when it is not a map. */
export function parseOpenpiRequest(m: MsgValue): MsgMap {
  if (!isMsgMap(m)) throw new BadRequestError("an openpi request must be one observation dict (a msgpack map)");
  return m;
}

/** Close code and reason after an error text frame (openpi's). */
export const ERROR_CLOSE = {
  code: 1011,
  reason: "Internal server error. Traceback included in previous frame.",
} as const;
