/**
 * The directions dependencies may take (STYLE.md): cli -> bridge, eval, sim, training -> datasets -> policy.
 * `npm run deps` checks them (and that there is no import cycle); .ci/run runs it.
 */
const layers = {
  policy: ["datasets", "training", "eval", "sim", "bridge", "cli", "bench", "test", "examples"],
  datasets: ["training", "eval", "sim", "bridge", "cli", "bench", "test", "examples"],
  training: ["sim", "eval", "bridge", "cli", "bench", "test", "examples"],
  eval: ["training", "sim", "bridge", "cli", "bench", "test", "examples"],
  sim: ["training", "cli", "bench", "test", "examples"],
  bridge: ["training", "eval", "sim", "cli", "bench", "test", "examples"],
  cli: ["bench", "test", "examples"],
};

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "An import cycle: move the shared piece into its own module.",
      from: {},
      to: { circular: true },
    },
    ...Object.entries(layers).map(([from, banned]) => ({
      name: `${from}-direction`,
      severity: "error",
      comment: `${from}/ may not import ${banned.join(", ")} (cli -> bridge, eval, sim, training -> datasets -> policy).`,
      from: { path: `^${from}/` },
      to: { path: `^(${banned.join("|")})/` },
    })),
    {
      name: "policy-no-transports",
      severity: "error",
      comment: "policy/ never imports tfjs-node, roslib or zeromq directly: they come in through an interface.",
      from: { path: "^policy/" },
      to: { path: "node_modules/(@tensorflow/tfjs-node|@tensorflow/tfjs-node-gpu|roslib|zeromq)/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(runs|data|test/fixtures|examples/data|scratch)/|^[^/]+\\.(c?js|ts)$" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default"] },
  },
};
