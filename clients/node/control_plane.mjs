// A small client of AstraRay's control-plane API for Node.js, on @grpc/grpc-js with the
// .proto files of proto/ loaded at run time (no generated code).
//
//   import { ControlPlane } from "./control_plane.mjs";
//   const plane = new ControlPlane("127.0.0.1:7100");
//   const nodes = await plane.listNodes();
//   await plane.createApp("ranker", { replicas: 2, models: [...], resources: {...} });
//   const app = await plane.waitForApp("apps/ranker", isReady);
//   plane.close();
//
// Messages are plain objects with the proto's field names (snake_case), enums as their
// names ("NODE_PHASE_READY") and 64-bit integers as strings. A failed call rejects with
// the gRPC error: `code` (a grpc.status), `details` (the server's message).

import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const PROTO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../proto");
const SERVICES = ["resource_service", "app_service", "scheduler_service"];

/** The astra.v1 package, loaded from the .proto files. */
function loadApi() {
  const definition = protoLoader.loadSync(
    SERVICES.map((name) => `astra/v1/${name}.proto`),
    { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true },
  );
  return grpc.loadPackageDefinition(definition).astra.v1;
}

/** Whether the app serves its current spec: its scheduler acted on it, every replica is ready. */
export function isReady(app) {
  const ready = (app.conditions ?? []).find((condition) => condition.type === "Ready");
  return (
    app.observed_generation === app.generation &&
    !app.reconciling &&
    ready?.status === "CONDITION_STATUS_TRUE"
  );
}

/** The "Placed" condition when some replica cannot be placed, else undefined. */
export function unplaceable(app) {
  const placed = (app.conditions ?? []).find((condition) => condition.type === "Placed");
  const acted = app.observed_generation === app.generation;
  return acted && placed?.status === "CONDITION_STATUS_FALSE" ? placed : undefined;
}

/** The control-plane API at one address (`astra up`, or the API proxy of a deployment). */
export class ControlPlane {
  /**
   * @param {string} address host:port of the API.
   * @param {{deadlineMs?: number}} options the deadline of each call (default 10 s).
   */
  constructor(address, { deadlineMs = 10_000 } = {}) {
    const api = loadApi();
    const credentials = grpc.credentials.createInsecure();
    this.address = address;
    this.deadlineMs = deadlineMs;
    this.resources = new api.ResourceService(address, credentials);
    // One channel for the three services.
    const shared = { channelOverride: this.resources.getChannel() };
    this.apps = new api.AppService(address, credentials, shared);
    this.scheduler = new api.SchedulerService(address, credentials, shared);
  }

  /** Every node (only those in `phase`, e.g. "NODE_PHASE_READY", if given), in name order. */
  async listNodes({ phase = "NODE_PHASE_UNSPECIFIED" } = {}) {
    return this.#pages(this.resources, "ListNodes", { phase }, "nodes");
  }

  /** Starts draining a node; resolves to the node, DRAINING. */
  async drainNode(name, reason = "") {
    return (await this.#call(this.resources, "DrainNode", { name, reason })).node;
  }

  /** Creates app `apps/{appId}`; resolves to the app as created. */
  async createApp(appId, app) {
    return (await this.#call(this.apps, "CreateApp", { app_id: appId, app })).app;
  }

  /** Gets an app ("apps/{id}") with its status. */
  async getApp(name) {
    return (await this.#call(this.apps, "GetApp", { name })).app;
  }

  /** Every app, in name order. */
  async listApps() {
    return this.#pages(this.apps, "ListApps", {}, "apps");
  }

  /** Every replica of an app ("apps/{id}"). */
  async listReplicas(parent) {
    return this.#pages(this.apps, "ListReplicas", { parent }, "replicas");
  }

  /** The routes of `models` (of every model when empty). */
  async getRoutes(models = []) {
    return (await this.#call(this.scheduler, "GetRoutes", { models })).routes;
  }

  /**
   * Watches an app until `until(app)` holds, calling `onChange(app)` whenever its status
   * changes. The API has no app watch: this polls GetApp every `intervalMs`.
   * Rejects when some replica cannot be placed (the error names the reason), or after
   * `timeoutMs`.
   */
  async waitForApp(
    name,
    until,
    { onChange = () => {}, intervalMs = 200, timeoutMs = 60_000 } = {},
  ) {
    const deadline = Date.now() + timeoutMs;
    let seen = "";
    for (;;) {
      const app = await this.getApp(name);
      const { generation, observed_generation, replica_counts, conditions } = app;
      const status = JSON.stringify([generation, observed_generation, replica_counts, conditions]);
      if (status !== seen) {
        seen = status;
        onChange(app);
      }
      if (until(app)) return app;
      const placed = unplaceable(app);
      if (placed) throw new Error(`${name} cannot be placed: ${placed.reason}: ${placed.message}`);
      if (Date.now() >= deadline) {
        throw new Error(`${name} did not get there within ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }

  /** Closes the channel. */
  close() {
    this.resources.close();
  }

  #call(client, method, request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.deadlineMs);
      client[method](request, { deadline }, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });
  }

  async #pages(client, method, request, field) {
    const items = [];
    let page_token = "";
    do {
      const response = await this.#call(client, method, { ...request, page_token });
      items.push(...response[field]);
      page_token = response.next_page_token;
    } while (page_token);
    return items;
  }
}

/** A failed call's code name and the server's message, or any other error's message. */
export function describeError(error) {
  if (typeof error.code !== "number") return error.message;
  const code = Object.keys(grpc.status).find((name) => grpc.status[name] === error.code);
  return `${code}: ${error.details}`;
}
