/**
 * The directions dependencies may take:
 * cli -> pipelines -> bridge, eval, sim, training -> datasets -> policy (sim may also import bridge and
 * eval). `pipelines/` holds the pipelines that use every layer below it (the demo); only cli/, bench/
 * and test/ import it. `npm run deps` checks them (and that there is no import cycle); .ci/run runs it.
 */
const layers = {
  policy: ["datasets", "training", "eval", "sim", "bridge", "pipelines", "cli", "bench", "test", "examples"],
  datasets: ["training", "eval", "sim", "bridge", "pipelines", "cli", "bench", "test", "examples"],
  training: ["sim", "eval", "bridge", "pipelines", "cli", "bench", "test", "examples"],
  eval: ["training", "sim", "bridge", "pipelines", "cli", "bench", "test", "examples"],
  sim: ["training", "pipelines", "cli", "bench", "test", "examples"],
  bridge: ["training", "eval", "sim", "pipelines", "cli", "bench", "test", "examples"],
  pipelines: ["cli", "bench", "test", "examples"],
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
      comment: `${from}/ may not import ${banned.join(", ")} (cli -> pipelines -> bridge, eval, sim, training -> datasets -> policy).`,
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
