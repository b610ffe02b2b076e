/**
 * Exact Jacobian-vector products in tfjs, which has reverse-mode autodiff only: by double backward.
 * For `y = f(x)` the vector-Jacobian product `g(w) = J^T w = d<f(x), w>/dx` is linear in `w`, so
 * `J v = d<g(w), v>/dw` (at any `w`, here 0). Cost: one forward and two backward passes of `f`.
 *
 * MeanFlow (Geng et al. 2025) needs the total derivative of the average velocity along the flow,
 * `du/dt = v . du/dz + du/dt`: the JVP of `u(z, r, t)` at tangents `(v, 0, 1)`.
 */
import * as tf from "@tensorflow/tfjs";

/**
 * The value of `f` at `primals` and its directional derivative along `tangents`: `J v`, summed over
 * the inputs (`sum_i df/dx_i . v_i`). `primals[i]` and `tangents[i]` have the same shape; `f` must
 * be differentiable twice in tfjs (every op's gradient itself differentiable). Both results are
 * new tensors (call inside `tf.tidy` or dispose them).
 */
export function jvp(
  f: (...xs: tf.Tensor[]) => tf.Tensor,
  primals: readonly tf.Tensor[],
  tangents: readonly tf.Tensor[],
): { value: tf.Tensor; jvp: tf.Tensor } {
  if (primals.length !== tangents.length || primals.length === 0)
    throw new Error(`jvp: ${primals.length} primals and ${tangents.length} tangents; need as many, at least one`);
  primals.forEach((p, i) => {
    const t = tangents[i]!;
    if (p.shape.join(",") !== t.shape.join(","))
      throw new Error(`jvp: primal ${i} has shape [${p.shape.join(", ")}], its tangent [${t.shape.join(", ")}]`);
  });
  const value = tf.tidy(() => f(...primals));
  // g(w) = J^T w for every input; <g(w), v> is linear in w, its gradient is J v.
  const vjpDotTangent = (w: tf.Tensor): tf.Tensor => {
    const grads = tf.grads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(...xs), w)))([...primals]);
    let s: tf.Tensor = tf.scalar(0);
    grads.forEach((g, i) => (s = tf.add(s, tf.sum(tf.mul(g, tangents[i]!)))));
    return s;
  };
  const out = tf.tidy(() => tf.grad(vjpDotTangent)(tf.zerosLike(value)));
  return { value, jvp: out };
}
