// Validates the chart's custom resources against their CRDs' schemas, as compiled into the
// @kubernetes-models packages (npm): ServiceMonitor and PrometheusRule (prometheus-operator),
// VirtualService (Istio). Reads a JSON array of objects on standard input; exits 1 on any error.
// Usage: node validate-crds.mjs <node_modules dir> < objects.json
// These validators check types, required fields and enumerations; unlike kubernetes-validate
// --strict they do not reject unknown fields (the CRD schemas do not forbid them).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const nodeModules = process.argv[2];
const models = {
  "monitoring.coreos.com/v1 ServiceMonitor": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "monitoring.coreos.com/v1 PrometheusRule": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
  "networking.istio.io/v1 VirtualService": "@kubernetes-models/istio/networking.istio.io/v1/VirtualService.js",
};

const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const object of objects) {
  const id = `${object.apiVersion} ${object.kind}`;
  const name = `${object.kind.toLowerCase()}/${object.metadata?.name}`;
  const path = models[id];
  if (!path) {
    console.log(`ERROR ${name}: no schema for ${id}`);
    failed++;
    continue;
  }
  const module = await import(pathToFileURL(join(nodeModules, path)).href);
  try {
    new module[object.kind](object).validate();
    console.log(`OK ${name} (${id})`);
  } catch (error) {
    console.log(`ERROR ${name} (${id}): ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
