"""Validates every object of a rendered chart (a multi-document YAML file).

Kubernetes' own kinds go to `kubernetes-validate --strict` (unknown fields fail) for the oldest and
the newest Kubernetes the chart supports; a kind it has no schema for fails, instead of the warning
it prints. The custom resources the chart may render (ServiceMonitor, PrometheusRule,
VirtualService) go to validate-crds.mjs, which checks them against their CRDs' schemas.

Usage: python validate.py <rendered.yaml> <kubernetes-validate> <node_modules dir>
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml

KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("networking.istio.io/v1", "VirtualService"),
}


def main(rendered, kubernetes_validate, node_modules):
    with open(rendered) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    if not objects:
        print(f"ERROR {rendered}: no object rendered")
        return 1
    core = [o for o in objects if (o["apiVersion"], o["kind"]) not in CUSTOM_KINDS]
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS]
    failed = False

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(core, f)
    try:
        args = [kubernetes_validate, "--strict", "--quiet"]
        for version in KUBERNETES_VERSIONS:
            args += ["-k", version]
        result = subprocess.run(args + [f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    output = (result.stdout + result.stderr).replace(f.name, rendered)
    if output.strip():
        print(output.rstrip())
    # A kind without a schema is only a warning (and exit 0) for kubernetes-validate.
    if result.returncode != 0 or "WARN" in output:
        failed = True
    else:
        print(f"kubernetes-validate --strict: {len(core)} objects valid for Kubernetes {', '.join(KUBERNETES_VERSIONS)}")

    if custom:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate-crds.mjs")
        result = subprocess.run(["node", script, node_modules], input=json.dumps(custom), capture_output=True, text=True)
        print((result.stdout + result.stderr).rstrip())
        failed = failed or result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
