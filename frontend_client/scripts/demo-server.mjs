// Start one demo server (see test/helpers/server.ts), print "ready <origin>", stop on SIGTERM/SIGINT.
import { startDemoServer } from "../.test-build/test/helpers/server.js";

const server = await startDemoServer();
process.stdout.write(`ready ${server.origin}\n`);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
setInterval(() => undefined, 1 << 30);
