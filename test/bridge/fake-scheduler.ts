import type { Scheduler } from "../../bridge/scheduler.ts";

/**
 * A fake scheduler for tests: time moves only in {@link FakeScheduler.advance}, which runs due
 * timers in time order and lets promise callbacks settle between them.
 */
export class FakeScheduler implements Scheduler {
  private t = 0;
  private seq = 0;
  private timers: { at: number; seq: number; fn: () => void }[] = [];

  now(): number {
    return this.t;
  }

  at(timeS: number, fn: () => void): () => void {
    const timer = { at: timeS, seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }

  /**
   * Advances time by `seconds`, firing each due timer at its own time; `lateS(timeS)` may add a
   * lateness to a timer (to simulate a busy event loop).
   */
  async advance(seconds: number, opts: { lateS?: (timeS: number) => number } = {}): Promise<void> {
    const end = this.t + seconds;
    for (;;) {
      await settle();
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.at > end + 1e-12) break;
      this.timers.shift();
      this.t = Math.max(this.t, next.at + (opts.lateS?.(next.at) ?? 0));
      next.fn();
    }
    this.t = Math.max(this.t, end);
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}
