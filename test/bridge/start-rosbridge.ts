/**
 * Starts the test rosbridge v2 server (no ROS install needed) and prints its URL:
 * `npx tsx test/bridge/start-rosbridge.ts --port 9090 [--ros 1|2]`. Stops on SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { TestRosbridge } from "./rosbridge-server.ts";

const { values } = parseArgs({
  options: { port: { type: "string", default: "9090" }, ros: { type: "string", default: "2" } },
});
const port = Number(values.port);
const dialect = Number(values.ros);
if (!Number.isInteger(port) || port < 0 || port > 65535)
  throw new Error(`--port: expected 0..65535, got ${values.port}`);
if (dialect !== 1 && dialect !== 2) throw new Error(`--ros: expected 1 or 2, got ${values.ros}`);
const server = await TestRosbridge.create({ port, dialect });
process.stdout.write(`${server.url}\n`);
const stop = (): void => {
  void server.stop().then(() => {
    process.stdout.write(`stopped; ${server.delivered.length} messages delivered, ${server.errors.length} errors\n`);
    for (const e of server.errors.slice(-20)) process.stderr.write(`${e}\n`);
    process.exit(0);
  });
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
