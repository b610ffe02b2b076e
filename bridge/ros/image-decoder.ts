/**
 * Decodes camera messages off the control loop's thread. A 640x480 JPEG takes jpeg-js some tens of
 * milliseconds, longer than a control period, so the link hands each camera message to one worker
 * thread (`image-decoder-worker.ts`) and gets RGB bytes at the profile's size back.
 *
 * Latest-value semantics per camera: at most one message of a camera is being decoded; one that
 * arrives meanwhile waits as the next, replacing an older waiting one (counted in `superseded`,
 * never queued without bound). Results come back in each camera's arrival order. A crashed worker
 * fails every waiting and later message with its error (reported, never silent).
 */
import { Worker } from "node:worker_threads";
import type { Parsed, RgbImage } from "./protocol.ts";
import { parseDecodeReply, type DecodeRequest } from "./image-decoder-protocol.ts";

/** What to decode: the message, its transport, the size to resize to, and how errors name it. */
export type DecodeJob = Omit<DecodeRequest, "id">;

interface Lane {
  busy: boolean;
  next?: { job: DecodeJob; done: (r: Parsed<RgbImage>) => void };
}

/** One decoder thread shared by a link's cameras; {@link close} it with the link. */
export class ImageDecoder {
  private worker?: Worker;
  private failure?: string;
  private nextId = 0;
  private readonly lanes = new Map<string, Lane>();
  private readonly inFlight = new Map<number, { lane: string; done: (r: Parsed<RgbImage>) => void }>();
  private counters = { decoded: 0, failed: 0, superseded: 0 };

  /** Starts the worker thread at once (it takes a moment to load), so the first image is not late. */
  constructor() {
    this.ensureWorker();
  }

  /** Decodes `job` for camera `lane` (see the module comment); `done` gets the image or the error. */
  submit(lane: string, job: DecodeJob, done: (r: Parsed<RgbImage>) => void): void {
    if (this.failure !== undefined) {
      done({ kind: "error", error: `${job.what}: ${this.failure}` });
      return;
    }
    let l = this.lanes.get(lane);
    if (!l) this.lanes.set(lane, (l = { busy: false }));
    if (l.busy) {
      if (l.next) this.counters.superseded++;
      l.next = { job, done };
      return;
    }
    this.post(lane, l, job, done);
  }

  /** Counters since creation: images decoded, messages refused, waiting messages replaced by newer ones. */
  stats(): { decoded: number; failed: number; superseded: number } {
    return { ...this.counters };
  }

  /** Stops the worker; decodes in flight are dropped (their `done` is not called). */
  async close(): Promise<void> {
    this.failure ??= "the camera decoder was closed";
    this.inFlight.clear();
    this.lanes.clear();
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }

  private post(lane: string, l: Lane, job: DecodeJob, done: (r: Parsed<RgbImage>) => void): void {
    const id = this.nextId++;
    l.busy = true;
    this.inFlight.set(id, { lane, done });
    const w = this.ensureWorker();
    w.ref();
    w.postMessage({ ...job, id } satisfies DecodeRequest);
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL("./image-decoder-entry.js", import.meta.url), { name: "actionflow-camera-decoder" });
    w.on("message", (raw: unknown) => this.onReply(raw));
    w.on("error", (err: Error) => this.fail(`the camera decoder crashed: ${err.message}`));
    w.on("exit", (code: number) => this.fail(`the camera decoder exited (code ${code})`));
    w.unref();
    this.worker = w;
    return w;
  }

  private onReply(raw: unknown): void {
    let r;
    try {
      r = parseDecodeReply(raw);
    } catch (err) {
      this.fail((err as Error).message);
      return;
    }
    const f = this.inFlight.get(r.id);
    if (!f) return;
    this.inFlight.delete(r.id);
    if (this.inFlight.size === 0) this.worker?.unref();
    const l = this.lanes.get(f.lane);
    if (r.ok) {
      this.counters.decoded++;
      f.done({ kind: "ok", value: { width: r.width, height: r.height, rgb: r.rgb } });
    } else {
      this.counters.failed++;
      f.done({ kind: "error", error: r.error });
    }
    if (!l) return;
    l.busy = false;
    const next = l.next;
    if (next) {
      l.next = undefined;
      this.post(f.lane, l, next.job, next.done);
    }
  }

  private fail(why: string): void {
    if (this.failure !== undefined) return;
    this.failure = why;
    const waiting = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const l of this.lanes.values()) {
      if (l.next) waiting.push({ lane: "", done: l.next.done });
      l.next = undefined;
      l.busy = false;
    }
    this.worker = undefined;
    for (const w of waiting) {
      this.counters.failed++;
      w.done({ kind: "error", error: why });
    }
  }
}
