// Test helper: `node --import ./test/cli/module-recorder.mjs ...` appends every module URL the
// process (and its worker threads) resolves to the file named by $ACTIONFLOW_MODULE_LOG.
import { register } from "node:module";

register("./module-recorder-hooks.mjs", import.meta.url, { data: { log: process.env.ACTIONFLOW_MODULE_LOG } });
