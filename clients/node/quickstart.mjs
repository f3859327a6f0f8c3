// The control plane driven from Node.js: list the nodes, create an app, watch it become
// ready, list its replicas.
//
//   node clients/node/quickstart.mjs ADDRESS [APP_ID [MODEL_URI MODEL_SHA256]]
//
// ADDRESS is the control-plane API (127.0.0.1:7100 for `astra up`); the model is an
// ONNX file on the nodes and its sha256. Exits 1 with the server's message on an error.

import { ControlPlane, describeError, isReady } from "./control_plane.mjs";

const [address, appId = "quickstart", uri = "/models/demo.onnx", sha256 = "0".repeat(64)] =
  process.argv.slice(2);
if (!address) {
  console.error("usage: node quickstart.mjs ADDRESS [APP_ID [MODEL_URI MODEL_SHA256]]");
  process.exit(2);
}

const short = (value, prefix) => value.replace(prefix, "");
const plane = new ControlPlane(address);
try {
  const nodes = await plane.listNodes();
  console.log(`${nodes.length} nodes`);
  for (const node of nodes) {
    const cores = Number(node.capacity.cpu_millis) / 1000;
    console.log(`node ${node.name} ${short(node.phase, "NODE_PHASE_")} ${cores} cores`);
  }
  const created = await plane.createApp(appId, {
    models: [{ name: "demo", version: "1", uri, sha256, format: "MODEL_FORMAT_ONNX" }],
    replicas: 2,
    resources: { cpu_millis: 500, memory_bytes: String(256 << 20) },
  });
  console.log(`created ${created.name} (generation ${created.generation})`);
  const app = await plane.waitForApp(created.name, isReady, {
    onChange: ({ name, replica_counts: { desired, placed, ready } }) =>
      console.log(`${name}: ${placed}/${desired} placed, ${ready}/${desired} ready`),
  });
  console.log(`${app.name} is ready`);
  for (const replica of await plane.listReplicas(app.name)) {
    const phase = short(replica.phase, "REPLICA_PHASE_");
    console.log(`replica ${replica.name} on ${replica.node} ${phase} at ${replica.endpoint}`);
  }
} catch (error) {
  console.error(`error: ${describeError(error)}`);
  process.exitCode = 1;
} finally {
  plane.close();
}
