/**
 * The exact JVP that MeanFlow needs (double backward in tfjs), against a closed form, the reverse-mode
 * Jacobian of a real action head, and finite differences.
 */
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { parseHeadConfig } from "../../policy/net/config.ts";
import { buildHead } from "../../policy/net/network.ts";
import { TfjsOps } from "../../policy/net/tfjs-ops.ts";
import { Rng } from "../../policy/random.ts";
import { useBackend } from "../../training/backend/registry.ts";
import { jvp } from "../../training/meanflow/jvp.ts";

beforeAll(async () => {
  await useBackend("cpu");
});

describe("jvp (double backward)", () => {
  it("is exact on a map with a closed-form derivative: f(x) = tanh(W x) * x, J v = (1 - tanh^2(Wx)) * (W v) * x + tanh(Wx) * v", () => {
    const rng = new Rng(1);
    const W = tf.tensor(rng.normalArray(25), [5, 5]);
    const x = tf.tensor(rng.normalArray(5), [5, 1]);
    const v = tf.tensor(rng.normalArray(5), [5, 1]);
    const f = (a: tf.Tensor): tf.Tensor => tf.mul(tf.tanh(tf.matMul(W, a)), a);
    const { value, jvp: Jv } = jvp(f, [x], [v]);
    const th = tf.tanh(tf.matMul(W, x));
    const exact = tf.add(tf.mul(tf.mul(tf.sub(1, tf.square(th)), tf.matMul(W, v)), x), tf.mul(th, v));
    expect(Jv.shape).toEqual([5, 1]);
    const got = Jv.dataSync();
    const want = exact.dataSync();
    for (let i = 0; i < 5; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
    expect(value.dataSync()).toEqual(f(x).dataSync());
  });

  it.each(["mlp", "transformer"] as const)(
    "on a small %s action head along (z, t) with tangent (v, 1): equals the reverse-mode Jacobian times (v, 1), and finite differences along z",
    (arch) => {
      const config = parseHeadConfig({
        arch,
        horizon: 4,
        actionDim: 3,
        obs: [{ name: "state", key: "observation.state", shape: [2] }],
        mlp: { width: 16, depth: 2, timeEmbedDim: 8 },
        transformer: { width: 16, depth: 1, heads: 2, mlpRatio: 2, timeEmbedDim: 8 },
      });
      const head = buildHead(config);
      const ops = new TfjsOps({ seed: 2, mode: "frozen" });
      const rng = new Rng(3);
      const obs = { state: tf.tensor(rng.normalArray(2 * 2), [2, 2]) };
      // Materialise the weights, then perturb the zero-initialised output layer so u is not 0.
      tf.tidy(() =>
        head.velocity(ops, head.encode(ops, obs), tf.zeros([2, 4, 3]), tf.zeros([2, 1]), { timeTokens: 1 }),
      );
      const weights = ops.snapshot();
      for (const a of weights.values())
        if (a.data.every((x) => x === 0)) for (let i = 0; i < a.data.length; i++) a.data[i] = 0.3 * rng.normal();
      const frozen = new TfjsOps({ seed: 2, weights, mode: "frozen" });
      const u = (z: tf.Tensor, t: tf.Tensor): tf.Tensor =>
        head.velocity(frozen, head.encode(frozen, obs), z, t, { timeTokens: 1 });
      const z = tf.tensor(rng.normalArray(2 * 4 * 3), [2, 4, 3]);
      const t = tf.tensor([0.3, 0.7], [2, 1]);
      const v = tf.tensor(rng.normalArray(2 * 4 * 3), [2, 4, 3]);
      const one = tf.onesLike(t);
      const { jvp: Jv } = jvp(u, [z, t], [v, one]);
      const got = Jv.dataSync();
      // Reference 1: the Jacobian row by row in reverse mode (one backward pass per output), times (v, 1).
      const outSize = got.length;
      const rows = new Float32Array(outSize);
      for (let k = 0; k < outSize; k++) {
        const onehot = tf.oneHot(tf.tensor1d([k], "int32"), outSize).reshape([2, 4, 3]);
        const [gz, gt] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(u(a, b), onehot)))([z, t]);
        rows[k] = tf.add(tf.sum(tf.mul(gz!, v)), tf.sum(gt!)).dataSync()[0]!;
      }
      let err = 0;
      let scale = 0;
      for (let i = 0; i < outSize; i++) {
        err = Math.max(err, Math.abs(got[i]! - rows[i]!));
        scale = Math.max(scale, Math.abs(rows[i]!));
      }
      expect(scale).toBeGreaterThan(0.1);
      expect(err / scale).toBeLessThan(1e-5);
      // Reference 2: central finite differences along z alone (t's sin/cos embedding has periods down
      // to 4e-3, too fast for float32 differences).
      const { jvp: Jz } = jvp(u, [z, t], [v, tf.zerosLike(t)]);
      const eps = 1e-2;
      const fd = tf.div(tf.sub(u(tf.add(z, tf.mul(v, eps)), t), u(tf.sub(z, tf.mul(v, eps)), t)), 2 * eps).dataSync();
      const gz = Jz.dataSync();
      let errZ = 0;
      let scaleZ = 0;
      for (let i = 0; i < gz.length; i++) {
        errZ = Math.max(errZ, Math.abs(gz[i]! - fd[i]!));
        scaleZ = Math.max(scaleZ, Math.abs(fd[i]!));
      }
      expect(scaleZ).toBeGreaterThan(0.1);
      expect(errZ / scaleZ).toBeLessThan(1e-2);
      frozen.dispose();
      ops.dispose();
    },
  );
});
