"""Tests over the chart's renderings: what `helm template` produces, read the way Kubernetes reads it
(a Service reaches the pods its selector matches, not the ones its name suggests).

Run: HELM=/path/to/helm python -m unittest discover -s charts/bazaar/tests -p 'test_*.py'
"""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
HELM = os.environ.get("HELM", "helm")
# The module registry as `bazaar modules --format json` prints it (CI checks the copy is current):
# what the chart derives from it is checked against it, not against a second list here.
REGISTRY = json.loads((CHART / "files" / "modules.json").read_text())
MODULES = [m["name"] for m in REGISTRY]
PREFIXES = {m["name"]: m["path_prefixes"] for m in REGISTRY}
SPLIT = str(CHART / "values-split.yaml")
# values-split.yaml's CHANGE-ME URLs refuse to render: an install gives the real ones, as these do.
SPLIT_URLS = str(CHART / "tests" / "values" / "split-urls.yaml")
EXTRAS = str(CHART / "tests" / "values" / "split-monitoring-canary.yaml")
THREE = str(CHART / "tests" / "values" / "three-processes-existing-secret.yaml")
ONE_ON_POSTGRES = str(CHART / "tests" / "values" / "one-deployment-on-postgres.yaml")


def helm_template(values_files, values, release, namespace, chart=CHART, flags=()):
    """`helm template` with the files, then `values` (a dict) on top: the CompletedProcess."""
    args = [HELM, "template", release, str(chart), "--namespace", namespace, *flags]
    for f in values_files:
        args += ["-f", f]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        if values is not None:
            yaml.safe_dump(values, extra)
            extra.flush()
            args += ["-f", extra.name]
        return subprocess.run(args, capture_output=True, text=True)


def render(*values_files, values=None, release="shop", namespace="shop", chart=CHART):
    result = helm_template(values_files, values, release, namespace, chart)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed: {result.stderr}")
    return Rendering([o for o in yaml.safe_load_all(result.stdout) if o])


def render_error(*values_files, values=None, release="shop", namespace="shop", chart=CHART, flags=()):
    """What `helm template` says when it refuses the values (and fails the test if it renders)."""
    result = helm_template(values_files, values, release, namespace, chart, flags)
    if result.returncode == 0:
        raise AssertionError("rendered; expected a refusal")
    return result.stderr


class Rendering:
    def __init__(self, objects):
        self.objects = objects

    def of(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind, name):
        found = [o for o in self.of(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    def deployments(self, track="stable"):
        return [d for d in self.of("Deployment") if d["spec"]["template"]["metadata"]["labels"].get("track") == track]

    def pods_of_service(self, service):
        """The Deployments whose pods the Service's selector matches."""
        selector = service["spec"]["selector"]
        return [d for d in self.of("Deployment")
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]

    def config(self):
        return self.of("ConfigMap")[0]["data"]


def container(workload):
    return workload["spec"]["template"]["spec"]["containers"][0]


def env(workload):
    """name -> a plain value, or ("secret", name, key) for a secretKeyRef."""
    out = {}
    for e in container(workload).get("env", []):
        if "value" in e:
            out[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            out[e["name"]] = ("secret", ref["name"], ref["key"])
    return out


def hosted(workload):
    return env(workload)["BAZAAR__MODULES__ENABLED"].split(",")


def metric_names_in_source():
    """The metric names the code registers: src/telemetry.rs and the kernel's bus module."""
    text = (REPO / "src" / "telemetry.rs").read_text() + (REPO / "modules" / "kernel" / "src" / "bus.rs").read_text()
    return set(re.findall(r'pub const \w+: &str = "([a-z_]+)";', text))


# A module as `bazaar modules --format json` would describe one added to the registry (a name the
# registry does not have yet: TheRegistry checks it).
NEW_MODULE = {"name": "returns", "path_prefixes": ["/returns", "/webhooks/returns"],
              "publishes": ["returns.ReturnRequested.v1"], "consumes": ["orders.OrderPlaced.v1"],
              "routes": ["POST /returns", "POST /webhooks/returns"], "settings": []}


def ingress_routes(r):
    """path -> the Deployments its backend Service reaches."""
    [ingress] = r.of("Ingress")
    return {p["path"]: r.pods_of_service(r.one("Service", p["backend"]["service"]["name"]))
            for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}


class TheRegistry(unittest.TestCase):
    """files/modules.json is the chart's only list of modules: a module added to the registry is
    hosted, routed, migrated and validated without an edit of the chart."""

    def test_the_registry_names_each_module_once_and_gives_each_prefix_to_one_module(self):
        self.assertTrue(MODULES)
        self.assertNotIn(NEW_MODULE["name"], MODULES, "the tests' new module has joined the registry: pick another")
        self.assertEqual(len(MODULES), len(set(MODULES)))
        prefixes = [p for ps in PREFIXES.values() for p in ps]
        self.assertEqual(len(prefixes), len(set(prefixes)), "two modules claim a prefix")
        for module, ps in PREFIXES.items():
            self.assertTrue(ps, f"{module} serves no path")
            for p in ps:
                self.assertRegex(p, r"^/[^/]", f"{module}: {p}")
                self.assertNotIn(p, ["/swagger-ui", "/api-docs", "/health", "/metrics"], f"{module}: {p} is the process's own")

    def test_every_route_of_a_module_lies_under_its_prefixes_so_the_ingress_reaches_it(self):
        for module in REGISTRY:
            for route in module["routes"]:
                path = route.split(" ", 1)[1]
                self.assertTrue(any(path == p or path.startswith(p + "/") for p in module["path_prefixes"]),
                                f"{module['name']}: {route} is under none of {module['path_prefixes']}")

    def with_new_module(self):
        """A copy of the chart whose files/modules.json has one module more, and nothing else changed."""
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        chart = Path(tmp.name) / "bazaar"
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("tests"))
        (chart / "files" / "modules.json").write_text(json.dumps(REGISTRY + [NEW_MODULE], indent=2) + "\n")
        return chart

    def test_a_missing_or_broken_registry_file_is_named_with_the_command_that_writes_it(self):
        for text in [None, "", "[]", '[{"name": "users"']:
            chart = self.with_new_module()
            if text is None:
                (chart / "files" / "modules.json").unlink()
            else:
                (chart / "files" / "modules.json").write_text(text)
            error = render_error(chart=chart)
            self.assertIn("files/modules.json", error)
            self.assertIn("bazaar modules --format json > charts/bazaar/files/modules.json", error)

    def test_a_new_module_joins_the_monolith_with_its_routes(self):
        r = render(chart=self.with_new_module())
        [d] = r.deployments()
        self.assertEqual(hosted(d), MODULES + ["returns"])
        routes = ingress_routes(r)
        for p in NEW_MODULE["path_prefixes"]:
            self.assertEqual(routes[p], [d])

    def test_a_new_module_joins_the_star_deployment_of_the_split_with_its_routes_and_migration(self):
        r = render(SPLIT, SPLIT_URLS, chart=self.with_new_module())
        [rest] = [d for d in r.deployments() if "returns" in hosted(d)]
        self.assertEqual(rest["metadata"]["name"], "shop-bazaar-others")
        self.assertEqual(hosted(rest)[-1], "returns")
        routes = ingress_routes(r)
        for p in NEW_MODULE["path_prefixes"]:
            self.assertEqual(routes[p], [rest])
        job = r.one("Job", "shop-bazaar-migrate-returns")
        self.assertEqual(container(job)["args"], ["migrate", "--modules", "returns"])
        self.assertEqual(env(job)["BAZAAR__DATABASE__URL"], ("secret", "shop-bazaar-migrations", "database-url"))

    def test_a_new_module_may_have_a_database_of_its_own(self):
        r = render(SPLIT, SPLIT_URLS, chart=self.with_new_module(),
                   values={"database": {"modules": {"returns": "postgres://bazaar:secret@returns-db:5432/returns"}}})
        for workload in [r.one("Job", "shop-bazaar-migrate-returns"), r.one("Deployment", "shop-bazaar-others")]:
            self.assertEqual(env(workload)["BAZAAR__MODULES__RETURNS__DATABASE_URL"][2], "returns-database-url")

    def test_a_new_module_is_hosted_nowhere_when_no_deployment_says_star(self):
        error = render_error(THREE, chart=self.with_new_module(),
                             values={"deployments": {"others": {"modules": [m for m in MODULES if m not in ("users", "catalog", "orders")]}}})
        self.assertIn("no Deployment hosts module 'returns'", error)

    def test_a_module_left_out_of_every_deployment_is_named(self):
        error = render_error(values={"deployments": {"monolith": {"modules": MODULES[:-1]}}})
        self.assertIn(f"no Deployment hosts module '{MODULES[-1]}'", error)

    def test_star_after_names_hosts_those_then_every_module_no_other_deployment_names(self):
        r = render(THREE, values={"deployments": {"others": {"modules": [MODULES[-1], "*"]}}})
        others = r.one("Deployment", "shop-bazaar-others")
        self.assertEqual(hosted(others), [MODULES[-1]] + [m for m in MODULES[:-1] if m not in ("users", "catalog", "orders")])

    def test_two_deployments_saying_star_do_not_render(self):
        error = render_error(THREE, values={"deployments": {"orders": {"modules": ["orders", "*"]}}})
        self.assertIn('host "*"', error)

    def test_a_star_left_with_no_module_does_not_render(self):
        error = render_error(THREE, values={"deployments": {"users-catalog": {"modules": MODULES}, "orders": None}})
        self.assertIn('deployments.others.modules: "*" (every module no other Deployment names) is left with none', error)

    def test_unknown_names_are_refused_with_the_registrys_names(self):
        for values in [{"deployments": {"monolith": {"modules": ["*", "no-such-module"]}}},
                       {"database": {"kind": "external", "url": "postgres://p/{module}", "modules": {"no-such-module": "postgres://p/x"}}},
                       {"database": {"existingSecretModules": ["no-such-module"]}, "existingSecret": "s"}]:
            error = render_error(values=values)
            self.assertIn("unknown module 'no-such-module'", error)
            self.assertIn(", ".join(MODULES), error)


class TheSplit(unittest.TestCase):
    """values-split.yaml: one Deployment per module over RabbitMQ."""

    @classmethod
    def setUpClass(cls):
        cls.r = render(SPLIT, SPLIT_URLS)
        with open(SPLIT) as f:
            cls.values = yaml.safe_load(f)
        with open(SPLIT_URLS) as f:
            urls = yaml.safe_load(f)
        cls.values["bus"]["rabbitmq"]["url"] = urls["bus"]["rabbitmq"]["url"]
        cls.values["database"]["url"] = urls["database"]["url"]
        cls.values["database"]["modules"].update(urls["database"]["modules"])

    def hosts(self):
        return {m: d for d in self.r.deployments() for m in hosted(d)}

    def test_every_module_is_hosted_by_exactly_one_deployment(self):
        hosted_modules = [m for d in self.r.deployments() for m in hosted(d)]
        self.assertEqual(sorted(hosted_modules), sorted(MODULES))

    def test_each_deployment_hosts_the_modules_its_values_name_and_the_star_one_every_other(self):
        entries = {key: entry["modules"] for key, entry in self.values["deployments"].items() if entry.get("enabled", True)}
        [rest] = [key for key, modules in entries.items() if modules == ["*"]]
        named = [m for modules in entries.values() for m in modules if m != "*"]
        wanted = {f"shop-bazaar-{key}": modules for key, modules in entries.items() if key != rest}
        wanted[f"shop-bazaar-{rest}"] = [m for m in MODULES if m not in named]
        self.assertTrue(wanted[f"shop-bazaar-{rest}"], "values-split.yaml's \"*\" Deployment hosts a module today")
        got = {d["metadata"]["name"]: hosted(d) for d in self.r.deployments()}
        self.assertEqual(got, wanted)

    def test_the_ingress_routes_each_modules_prefixes_to_the_service_of_the_deployment_hosting_it(self):
        ingress = self.r.of("Ingress")[0]
        routes = {p["path"]: p["backend"]["service"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
        hosts = self.hosts()
        for module, prefixes in PREFIXES.items():
            for prefix in prefixes:
                self.assertIn(prefix, routes, f"{module}: {prefix} not routed")
                service = self.r.one("Service", routes[prefix]["name"])
                self.assertEqual(routes[prefix]["port"]["name"], "http")
                self.assertIn("http", [p["name"] for p in service["spec"]["ports"]])
                self.assertEqual([d["metadata"]["name"] for d in self.r.pods_of_service(service)],
                                 [hosts[module]["metadata"]["name"]], f"{prefix} reaches the wrong pods")
                self.assertEqual(
                    [p for p in ingress["spec"]["rules"][0]["http"]["paths"] if p["path"] == prefix][0]["pathType"], "Prefix")

    def test_the_ingress_sends_swagger_ui_to_the_deployment_hosting_users(self):
        ingress = self.r.of("Ingress")[0]
        routes = {p["path"]: p["backend"]["service"]["name"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
        users = self.hosts()["users"]
        for path in ["/swagger-ui", "/api-docs"]:
            self.assertEqual(self.r.pods_of_service(self.r.one("Service", routes[path])), [users])

    def test_the_bus_is_rabbitmq_everywhere_with_the_brokers_url_from_the_secret(self):
        self.assertEqual(self.r.config()["BAZAAR__BUS__KIND"], "rabbitmq")
        secret = self.r.one("Secret", "shop-bazaar")
        self.assertEqual(base64.b64decode(secret["data"]["rabbitmq-url"]).decode(), self.values["bus"]["rabbitmq"]["url"])
        for d in self.r.deployments():
            self.assertEqual(container(d)["envFrom"], [{"configMapRef": {"name": "shop-bazaar"}}])
            self.assertEqual(env(d)["BAZAAR__BUS__RABBITMQ__URL"], ("secret", "shop-bazaar", "rabbitmq-url"))

    def test_each_module_reads_its_own_database_url(self):
        secret = self.r.one("Secret", "shop-bazaar")["data"]
        decoded = {k: base64.b64decode(v).decode() for k, v in secret.items()}
        for module, d in self.hosts().items():
            e = env(d)
            self.assertEqual(e["BAZAAR__DATABASE__URL"], ("secret", "shop-bazaar", "database-url"))
            own = self.values["database"]["modules"].get(module)
            key = f"BAZAAR__MODULES__{module.upper()}__DATABASE_URL"
            if own:
                self.assertEqual(e[key], ("secret", "shop-bazaar", f"{module}-database-url"))
                self.assertEqual(decoded[f"{module}-database-url"], own)
            else:
                self.assertNotIn(key, e)
        self.assertIn("{module}", decoded["database-url"])

    def test_only_the_users_deployment_signs_and_the_others_verify_with_its_jwks(self):
        users = self.hosts()["users"]
        users_services = [s for s in self.r.of("Service") if self.r.pods_of_service(s) == [users]]
        self.assertEqual(len(users_services), 1)
        service = users_services[0]
        port = service["spec"]["ports"][0]["port"]
        for d in self.r.deployments():
            e = env(d)
            if d is users:
                self.assertEqual(e["BAZAAR__AUTH__SIGNING_KEY"], ("secret", "shop-bazaar", "signing-key"))
                self.assertNotIn("BAZAAR__AUTH__JWKS_URL", e)
            else:
                self.assertNotIn("BAZAAR__AUTH__SIGNING_KEY", e)
                self.assertEqual(e["BAZAAR__AUTH__JWKS_URL"],
                                 f"http://{service['metadata']['name']}:{port}/.well-known/jwks.json")

    def test_a_migration_job_per_module_runs_before_install_and_upgrade_with_its_deployments_settings(self):
        jobs = self.r.of("Job")
        self.assertEqual(sorted(container(j)["args"][2] for j in jobs), sorted(MODULES))
        hook_secret = self.r.one("Secret", "shop-bazaar-migrations")
        self.assertEqual(hook_secret["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade")
        self.assertEqual(hook_secret["data"].keys(), self.r.one("Secret", "shop-bazaar")["data"].keys())
        hosts = self.hosts()
        for job in jobs:
            annotations = job["metadata"]["annotations"]
            self.assertEqual(annotations["helm.sh/hook"], "pre-install,pre-upgrade")
            self.assertLess(int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]),
                            int(annotations["helm.sh/hook-weight"]), "the hook Secret exists before the Jobs")
            args = container(job)["args"]
            self.assertEqual(args[:2], ["migrate", "--modules"])
            module = args[2]
            job_env = env(job)
            # What the Deployment gets from the ConfigMap, the Job has inline (the ConfigMap does not
            # exist yet before an install), and the secrets from the hook's copy of the Secret.
            for name, value in self.r.config().items():
                self.assertEqual(job_env[name], value, f"{module}: {name}")
            deployment_env = env(hosts[module])
            for name in ["BAZAAR__DATABASE__URL", f"BAZAAR__MODULES__{module.upper()}__DATABASE_URL",
                         "BAZAAR__BUS__RABBITMQ__URL", "BAZAAR__AUTH__SIGNING_KEY", "BAZAAR__AUTH__JWKS_URL"]:
                if name in deployment_env:
                    value = deployment_env[name]
                    if isinstance(value, tuple):
                        value = ("secret", "shop-bazaar-migrations", value[2])
                    self.assertEqual(job_env.get(name), value, f"{module}: {name}")
        self.assertEqual(self.r.config()["BAZAAR__DATABASE__AUTO_MIGRATE"], "false")

    def test_each_deployment_has_its_autoscaler_budget_and_network_policy(self):
        for d in self.r.deployments():
            name = d["metadata"]["name"]
            labels = d["spec"]["template"]["metadata"]["labels"]
            hpa = self.r.one("HorizontalPodAutoscaler", name)
            self.assertEqual(hpa["spec"]["scaleTargetRef"], {"apiVersion": "apps/v1", "kind": "Deployment", "name": name})
            self.assertNotIn("replicas", d["spec"], "the autoscaler owns the replica count")
            pdb = self.r.one("PodDisruptionBudget", name)
            self.assertLessEqual(pdb["spec"]["selector"]["matchLabels"].items(), labels.items())
            policy = self.r.one("NetworkPolicy", name)
            self.assertLessEqual(policy["spec"]["podSelector"]["matchLabels"].items(), labels.items())
            self.assertEqual(policy["spec"]["policyTypes"], ["Ingress"])
            peers = policy["spec"]["ingress"][0]["from"]
            release_pods = {"app.kubernetes.io/name": "bazaar", "app.kubernetes.io/instance": "shop"}
            self.assertIn({"podSelector": {"matchLabels": release_pods}}, peers)
            self.assertTrue(any("namespaceSelector" in p for p in peers), "the ingress controller and Prometheus")
        self.assertEqual(self.r.one("HorizontalPodAutoscaler", "shop-bazaar-orders")["spec"]["maxReplicas"], 10)

    def test_every_pod_runs_locked_down(self):
        for workload in self.r.of("Deployment") + self.r.of("Job"):
            pod = workload["spec"]["template"]["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"])
            self.assertEqual(pod["securityContext"]["runAsUser"], 10001)
            self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
            self.assertFalse(pod["automountServiceAccountToken"])
            c = container(workload)
            self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
            self.assertFalse(c["securityContext"]["allowPrivilegeEscalation"])
            self.assertEqual(c["securityContext"]["capabilities"], {"drop": ["ALL"]})
            self.assertIn("/tmp", [m["mountPath"] for m in c["volumeMounts"]])
            self.assertIn("limits", c["resources"])

    def test_probes_use_the_health_endpoints(self):
        for d in self.r.deployments():
            c = container(d)
            self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/health/live")
            self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/health/ready")
            self.assertEqual(c["args"], ["serve"])


class TheDefault(unittest.TestCase):
    """values.yaml: the monolith on SQLite."""

    @classmethod
    def setUpClass(cls):
        cls.r = render()

    def test_one_deployment_hosts_every_module_on_the_in_process_bus(self):
        [d] = self.r.deployments()
        self.assertEqual(hosted(d), MODULES)
        self.assertEqual(self.r.config()["BAZAAR__BUS__KIND"], "in_process")
        self.assertNotIn("BAZAAR__BUS__RABBITMQ__URL", env(d))

    def test_sqlite_lives_on_the_claim_with_one_replica_replaced_not_rolled(self):
        [d] = self.r.deployments()
        self.assertEqual(d["spec"]["replicas"], 1)
        self.assertEqual(d["spec"]["strategy"], {"type": "Recreate"})
        self.assertEqual(self.r.of("HorizontalPodAutoscaler"), [])
        [claim] = self.r.of("PersistentVolumeClaim")
        volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container(d)["volumeMounts"]}
        self.assertEqual(volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"], claim["metadata"]["name"])
        self.assertEqual(self.r.config()["BAZAAR__DATABASE__URL"], "sqlite:///data/{module}.db?mode=rwc")

    def test_the_process_migrates_at_start_up_since_no_hook_can_mount_the_volume(self):
        self.assertEqual(self.r.of("Job"), [])
        self.assertEqual(self.r.config()["BAZAAR__DATABASE__AUTO_MIGRATE"], "true")

    def test_production_with_a_generated_ed25519_signing_key(self):
        self.assertEqual(self.r.config()["BAZAAR_ENV"], "production")
        key = base64.b64decode(self.r.one("Secret", "shop-bazaar")["data"]["signing-key"]).decode()
        self.assertTrue(key.startswith("-----BEGIN PRIVATE KEY-----"), key)
        self.assertEqual(env(self.r.deployments()[0])["BAZAAR__AUTH__SIGNING_KEY"], ("secret", "shop-bazaar", "signing-key"))

    def test_every_prefix_and_swagger_ui_reach_the_monolith(self):
        paths = self.r.of("Ingress")[0]["spec"]["rules"][0]["http"]["paths"]
        self.assertEqual({p["backend"]["service"]["name"] for p in paths}, {"shop-bazaar-monolith"})
        self.assertEqual({p["path"] for p in paths},
                         {p for ps in PREFIXES.values() for p in ps} | {"/swagger-ui", "/api-docs"})

    def test_no_custom_resource_unless_asked_for(self):
        kinds = {o["kind"] for o in self.r.objects}
        self.assertFalse(kinds & {"ServiceMonitor", "PrometheusRule", "VirtualService"})


class TheOptions(unittest.TestCase):
    """values-split.yaml with monitoring, a canary, TLS and a bootstrap admin."""

    @classmethod
    def setUpClass(cls):
        cls.r = render(SPLIT, SPLIT_URLS, EXTRAS)

    def test_the_canary_hosts_the_same_modules_with_the_new_image_and_takes_its_weight_in_the_mesh(self):
        [canary] = self.r.deployments("canary")
        stable = self.r.one("Deployment", "shop-bazaar-orders")
        self.assertEqual(container(canary)["image"], "bazaar:0.2.0-rc.1")
        self.assertEqual(container(stable)["image"], "bazaar:0.1.0")
        self.assertEqual(env(canary), env(stable))
        stable_service = self.r.one("Service", "shop-bazaar-orders")
        canary_service = self.r.one("Service", "shop-bazaar-orders-canary")
        self.assertEqual(self.r.pods_of_service(stable_service), [stable])
        self.assertEqual(self.r.pods_of_service(canary_service), [canary])
        [vs] = self.r.of("VirtualService")
        routes = vs["spec"]["http"][0]["route"]
        self.assertEqual({r["destination"]["host"]: r["weight"] for r in routes},
                         {"shop-bazaar-orders": 80, "shop-bazaar-orders-canary": 20})
        self.assertEqual(vs["spec"]["hosts"], ["shop-bazaar-orders"])
        # The NetworkPolicy of orders covers the canary's pods too.
        policy = self.r.one("NetworkPolicy", "shop-bazaar-orders")
        labels = canary["spec"]["template"]["metadata"]["labels"]
        self.assertLessEqual(policy["spec"]["podSelector"]["matchLabels"].items(), labels.items())

    def test_the_service_monitor_scrapes_every_service_of_the_release(self):
        [monitor] = self.r.of("ServiceMonitor")
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in self.r.of("Service") if selector.items() <= s["metadata"]["labels"].items()]
        self.assertEqual(len(services), len(self.r.of("Service")))
        self.assertEqual(monitor["spec"]["endpoints"][0]["path"], "/metrics")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack")

    def test_the_alerts_watch_5xx_outbox_backlog_and_dead_letters_by_the_names_the_code_exports(self):
        [rule] = self.r.of("PrometheusRule")
        alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
        self.assertEqual(set(alerts), {"BazaarHighErrorRate", "BazaarOutboxBacklog", "BazaarDeadLetters"})
        self.assertIn('status=~"5.."', alerts["BazaarHighErrorRate"])
        self.assertIn("bazaar_outbox_pending", alerts["BazaarOutboxBacklog"])
        self.assertIn("bazaar_dead_letters", alerts["BazaarDeadLetters"])
        known = metric_names_in_source()
        for expr in alerts.values():
            for metric in re.findall(r"\b((?:http|bazaar)_[a-z_]+)\{", expr):
                self.assertIn(metric, known, f"{metric} is not a metric the code exports")

    def test_the_dashboard_is_grafana_json_over_exported_metrics(self):
        [cm] = [c for c in self.r.of("ConfigMap") if c["metadata"]["name"] == "shop-bazaar-dashboard"]
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        dashboard = json.loads(cm["data"]["bazaar.json"])
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        known = metric_names_in_source()
        for expr in exprs:
            for metric in re.findall(r"\b((?:http|bazaar)_[a-z_]+?)(?:_bucket)?\{", expr):
                self.assertIn(metric, known, f"{metric} is not a metric the code exports")

    def test_the_bootstrap_admin_is_created_by_the_users_deployment_only(self):
        for d in self.r.deployments():
            e = env(d)
            if "users" in hosted(d):
                self.assertEqual(e["BAZAAR__USERS__BOOTSTRAP_ADMIN__EMAIL"], "admin@example.com")
                self.assertEqual(e["BAZAAR__USERS__BOOTSTRAP_ADMIN__PASSWORD"],
                                 ("secret", "shop-bazaar", "bootstrap-admin-password"))
            else:
                self.assertNotIn("BAZAAR__USERS__BOOTSTRAP_ADMIN__EMAIL", e)

    def test_tls_and_the_host_reach_the_ingress(self):
        ingress = self.r.of("Ingress")[0]["spec"]
        self.assertEqual(ingress["rules"][0]["host"], "shop.example.com")
        self.assertEqual(ingress["tls"], [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}])
        self.assertEqual(ingress["ingressClassName"], "nginx")


class OtherGroupings(unittest.TestCase):
    def test_three_processes_with_an_existing_secret(self):
        r = render(THREE)
        self.assertEqual({d["metadata"]["name"]: hosted(d) for d in r.deployments()}, {
            "shop-bazaar-users-catalog": ["users", "catalog"],
            "shop-bazaar-orders": ["orders"],
            "shop-bazaar-others": [m for m in MODULES if m not in ("users", "catalog", "orders")],
        })
        self.assertEqual([s["metadata"]["name"] for s in r.of("Secret")], [], "the operator's Secret is used")
        for d in r.deployments():
            e = env(d)
            self.assertEqual(e["BAZAAR__BUS__RABBITMQ__URL"], ("secret", "bazaar-secrets", "rabbitmq-url"))
            self.assertEqual(e["BAZAAR__DATABASE__URL"], ("secret", "bazaar-secrets", "database-url"))
            if "users" not in hosted(d):
                self.assertEqual(e["BAZAAR__AUTH__JWKS_URL"], "http://shop-bazaar-users-catalog:80/.well-known/jwks.json")
        self.assertEqual(env(r.one("Deployment", "shop-bazaar-orders"))["BAZAAR__OUTBOX__BATCH_SIZE"], "200")
        self.assertEqual(env(r.one("Job", "shop-bazaar-migrate-orders"))["BAZAAR__OUTBOX__BATCH_SIZE"], "200")
        # The catalog's Job verifies like a process without users would: it migrates catalog alone.
        catalog_job = env(r.one("Job", "shop-bazaar-migrate-catalog"))
        self.assertEqual(catalog_job["BAZAAR__MODULES__ENABLED"], "catalog")
        self.assertIn("BAZAAR__AUTH__JWKS_URL", catalog_job)
        self.assertEqual(catalog_job["BAZAAR__DATABASE__URL"], ("secret", "bazaar-secrets", "database-url"))

    def test_one_deployment_on_server_databases_migrates_every_module_in_one_job(self):
        r = render(ONE_ON_POSTGRES)
        [job] = r.of("Job")
        self.assertEqual(container(job)["args"], ["migrate", "--modules", ",".join(MODULES)])
        e = env(job)
        self.assertEqual(e["BAZAAR__BUS__KIND"], "in_process")
        self.assertEqual(e["BAZAAR__MODULES__ORDERS__DATABASE_URL"], ("secret", "shop-bazaar-migrations", "orders-database-url"))
        [d] = r.deployments()
        self.assertNotIn("strategy", d["spec"])
        self.assertEqual(len(r.of("HorizontalPodAutoscaler")), 1)
        self.assertEqual(r.of("PersistentVolumeClaim"), [])


def pod(workload):
    return workload["spec"]["template"]["spec"]


def secret_refs(workload):
    """(variable, secretKeyRef) of every variable the container reads from a Secret."""
    return [(e["name"], e["valueFrom"]["secretKeyRef"]) for e in container(workload).get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})]


class TheExistingSecret(unittest.TestCase):
    """existingSecret: a key the chart reads from it is required, so a missing or misspelt key stops
    the pod instead of leaving the module on the image's SQLite default in an emptyDir."""

    def test_no_secret_reference_is_optional(self):
        r = render(THREE)
        workloads = r.deployments() + r.of("Job")
        self.assertTrue(all(secret_refs(w) for w in workloads))
        for w in workloads:
            for name, ref in secret_refs(w):
                self.assertNotIn("optional", ref, f"{w['metadata']['name']}: {name}")

    def test_every_hosted_module_gets_a_database_url_from_the_chart(self):
        for r in [render(THREE), render(THREE, values={"database": {"existingSecretModules": ["orders", "users"]}}),
                  render(SPLIT, SPLIT_URLS), render(ONE_ON_POSTGRES)]:
            for w in r.deployments() + r.of("Job"):
                e = env(w)
                for module in hosted(w):
                    self.assertTrue(f"BAZAAR__MODULES__{module.upper()}__DATABASE_URL" in e or "BAZAAR__DATABASE__URL" in e,
                                    f"{w['metadata']['name']}: {module} would fall back to the image's SQLite URL")

    def test_the_modules_named_in_existing_secret_modules_read_their_own_key_the_others_the_template(self):
        r = render(THREE, values={"database": {"existingSecretModules": ["orders"]}})
        for workload in [r.one("Deployment", "shop-bazaar-orders"), r.one("Job", "shop-bazaar-migrate-orders")]:
            e = env(workload)
            self.assertEqual(e["BAZAAR__MODULES__ORDERS__DATABASE_URL"], ("secret", "bazaar-secrets", "orders-database-url"))
            self.assertNotIn("BAZAAR__DATABASE__URL", e, "orders does not use the template")
        for name in ["shop-bazaar-users-catalog", "shop-bazaar-others"]:
            e = env(r.one("Deployment", name))
            self.assertEqual(e["BAZAAR__DATABASE__URL"], ("secret", "bazaar-secrets", "database-url"))
            self.assertEqual([k for k in e if k.startswith("BAZAAR__MODULES__") and k.endswith("__DATABASE_URL")], [])

    def test_sqlite_is_the_database_only_when_the_values_choose_it(self):
        self.assertTrue(render().config()["BAZAAR__DATABASE__URL"].startswith("sqlite:"))
        for r in [render(THREE), render(SPLIT, SPLIT_URLS), render(ONE_ON_POSTGRES)]:
            self.assertNotIn("BAZAAR__DATABASE__URL", r.config())
            for w in r.deployments() + r.of("Job"):
                self.assertFalse(any(str(v).startswith("sqlite:") for v in env(w).values()))


# The README's example: the payments module on Stripe, the chart knowing nothing of either.
STRIPE = {
    "env": {"BAZAAR__PAYMENTS__PROVIDER": "stripe"},
    "secretEnv": {"BAZAAR__PAYMENTS__STRIPE__API_KEY": "payments-stripe-api-key",
                  "BAZAAR__PAYMENTS__STRIPE__WEBHOOK_SECRET": "payments-stripe-webhook-secret"},
    "secrets": {"payments-stripe-api-key": "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "payments-stripe-webhook-secret": "whsec_test"},
}


def with_values(base, **changes):
    """A deep copy of `base` with the top-level maps of `changes` merged into it."""
    values = json.loads(json.dumps(base))
    for key, value in changes.items():
        values[key] = {**values.get(key, {}), **value}
    return values


def checksum(workload):
    return workload["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]


class TheSecretSettings(unittest.TestCase):
    """secretEnv and secrets: any module's secret settings, by names the chart does not know."""

    def assert_reads_the_secret_env(self, workload, secret):
        refs = dict(secret_refs(workload))
        for name, key in STRIPE["secretEnv"].items():
            self.assertEqual(refs.get(name), {"name": secret, "key": key}, f"{workload['metadata']['name']}: {name}")

    def test_secret_env_reaches_every_deployment_of_the_monolith_and_the_split_canary_included(self):
        for r in [render(values=STRIPE), render(SPLIT, SPLIT_URLS, EXTRAS, values=STRIPE)]:
            deployments = r.deployments() + r.deployments("canary")
            self.assertEqual(len(deployments), len(r.of("Deployment")))
            for d in deployments:
                self.assert_reads_the_secret_env(d, "shop-bazaar")
                for name, ref in secret_refs(d):
                    self.assertNotIn("optional", ref, f"{d['metadata']['name']}: {name}")
            self.assertEqual(r.config()["BAZAAR__PAYMENTS__PROVIDER"], "stripe")
            self.assertNotIn("BAZAAR__PAYMENTS__STRIPE__API_KEY", r.config(), "a secret stays out of the ConfigMap")
        self.assertTrue(r.deployments("canary"), "the split's rendering has a canary")

    def test_the_migration_jobs_and_their_copy_of_the_secret_get_none_of_it(self):
        r = render(SPLIT, SPLIT_URLS, values=STRIPE)
        self.assertTrue(r.of("Job"))
        for job in r.of("Job"):
            for name in STRIPE["secretEnv"]:
                self.assertNotIn(name, env(job), job["metadata"]["name"])
        hook = r.one("Secret", "shop-bazaar-migrations")["data"]
        own = r.one("Secret", "shop-bazaar")["data"]
        self.assertEqual(set(own) - set(hook), set(STRIPE["secrets"]))

    def test_the_charts_secret_carries_secrets_base64_encoded_next_to_its_own_keys(self):
        data = render(values=STRIPE).one("Secret", "shop-bazaar")["data"]
        for key, value in STRIPE["secrets"].items():
            self.assertEqual(base64.b64decode(data[key]).decode(), value)
        self.assertIn("signing-key", data)

    def test_with_an_existing_secret_the_variables_read_it_and_secrets_is_ignored(self):
        r = render(THREE, values=STRIPE)
        self.assertEqual(r.of("Secret"), [])
        for d in r.deployments():
            self.assert_reads_the_secret_env(d, "bazaar-secrets")
        # The chart cannot read that Secret: a key it does not list is the operator's to provide.
        r = render(THREE, values={"secretEnv": {"BAZAAR__PAYMENTS__STRIPE__API_KEY": "stripe"}})
        self.assertEqual(dict(secret_refs(r.deployments()[0]))["BAZAAR__PAYMENTS__STRIPE__API_KEY"],
                         {"name": "bazaar-secrets", "key": "stripe"})

    def test_the_secret_checksum_changes_when_a_secret_value_changes_so_the_pods_restart(self):
        before = render(values=STRIPE).deployments()[0]
        again = render(values=STRIPE).deployments()[0]
        after = render(values=with_values(STRIPE, secrets={"payments-stripe-api-key": "sk_test_rotated"})).deployments()[0]
        self.assertEqual(checksum(before), checksum(again))
        self.assertNotEqual(checksum(before), checksum(after))
        self.assertNotEqual(checksum(render().deployments()[0]), checksum(before))

    def test_the_readme_example_renders_and_is_the_one_tested_here(self):
        readme = (CHART / "README.md").read_text()
        [block] = [b for b in (yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)) if "secretEnv" in b]
        self.assertEqual(block["env"], STRIPE["env"])
        self.assertEqual(block["secretEnv"], STRIPE["secretEnv"])
        self.assertEqual(set(block["secrets"]), set(STRIPE["secrets"]))
        self.assert_reads_the_secret_env(render(values=block).deployments()[0], "shop-bazaar")

    def assert_refused(self, values, *expected, files=(), schema=None):
        """The templates refuse the values saying `expected` (also with the schema skipped), and so does
        the schema where it can (saying `schema`)."""
        error = render_error(*files, values=values, flags=["--skip-schema-validation"])
        for text in expected:
            self.assertIn(text, error)
        error = render_error(*files, values=values)
        for text in ([schema] if schema else expected):
            self.assertIn(text, error)

    def test_a_name_that_is_not_a_bazaar_setting_is_refused(self):
        for name in ["STRIPE_API_KEY", "bazaar__payments__stripe__api_key", "BAZAAR_PAYMENTS"]:
            self.assert_refused({"secretEnv": {name: "k"}, "secrets": {"k": "v"}},
                                f"secretEnv.{name}: not a Bazaar setting", schema=f'Property name of "{name}" does not match')

    def test_the_database_modules_and_bus_variables_are_left_to_the_charts_values(self):
        for name, values in [("BAZAAR__DATABASE__URL", "database.*"), ("BAZAAR__BUS__RABBITMQ__URL", "bus.*"),
                             ("BAZAAR__MODULES__ENABLED", "deployments.<key>.modules"),
                             (f"BAZAAR__MODULES__{MODULES[-1].upper()}__DATABASE_URL", "deployments.<key>.modules")]:
            # Whatever the configuration: the bus's URL is refused on the in-process bus too.
            for files in [(), (SPLIT, SPLIT_URLS)]:
                self.assert_refused({"secretEnv": {name: "k"}, "secrets": {"k": "v"}}, f"secretEnv.{name}:", values, files=files)

    def test_a_variable_the_chart_already_sets_is_refused_with_where_it_comes_from(self):
        for files, name, source in [((), "BAZAAR__AUTH__SIGNING_KEY", "the chart (Deployment monolith"),
                                    ((), "BAZAAR__SERVER__PORT", "the chart (its ConfigMap)"),
                                    ((SPLIT, SPLIT_URLS), "BAZAAR__AUTH__JWKS_URL", "the chart (Deployment "),
                                    ((SPLIT, SPLIT_URLS, EXTRAS), "BAZAAR__USERS__BOOTSTRAP_ADMIN__PASSWORD", "the chart (Deployment ")]:
            self.assert_refused({"secretEnv": {name: "signing-key"}}, f"secretEnv.{name}: {source}", "already sets it", files=files)

    def test_a_variable_env_already_sets_is_refused_naming_that_env(self):
        name = "BAZAAR__PAYMENTS__STRIPE__API_KEY"
        for files, values, source in [((), {"env": {name: "x"}}, "env"),
                                      ((), {"deploymentDefaults": {"env": {name: "x"}}}, "deploymentDefaults.env"),
                                      ((SPLIT, SPLIT_URLS), {"deployments": {"orders": {"env": {name: "x"}}}}, "deployments.orders.env")]:
            self.assert_refused({**values, "secretEnv": {name: "k"}, "secrets": {"k": "v"}},
                                f"secretEnv.{name}: {source} already sets it", files=files)

    def test_a_key_the_charts_secret_lacks_is_refused_naming_the_variable_and_the_key(self):
        values = with_values(STRIPE, secretEnv={"BAZAAR__PAYMENTS__STRIPE__API_KEY": "stripe-api-key"})
        self.assert_refused(values, "secretEnv.BAZAAR__PAYMENTS__STRIPE__API_KEY: key 'stripe-api-key' is not in the chart's Secret",
                            "secrets.stripe-api-key")
        self.assert_refused({"secretEnv": STRIPE["secretEnv"]}, "key 'payments-stripe-api-key' is not in the chart's Secret")

    def test_a_key_of_the_charts_own_is_refused_in_secrets(self):
        for key in ["signing-key", "rabbitmq-url", "database-url", "bootstrap-admin-password", "smtp-password"] + [f"{m}-database-url" for m in MODULES]:
            self.assert_refused({"secrets": {key: "v"}}, f"secrets.{key}: a key of the chart's own")

    def test_a_key_kubernetes_would_refuse_is_refused(self):
        self.assert_refused({"secrets": {"stripe/api": "v"}}, "secrets.stripe/api: a Secret key is letters, digits",
                            schema='Property name of "stripe/api" does not match')
        self.assert_refused({"secretEnv": {"BAZAAR__PAYMENTS__STRIPE__API_KEY": "stripe/api"}},
                            "secretEnv.BAZAAR__PAYMENTS__STRIPE__API_KEY: 'stripe/api' is not a Secret key",
                            schema="secretEnv.BAZAAR__PAYMENTS__STRIPE__API_KEY: Does not match pattern")


# Mail over SMTP with a login (as in split-monitoring-canary.yaml, which the packaging check renders
# and validates).
SMTP = {"notifications": {"transport": "smtp", "smtp": {"host": "smtp.example.com", "username": "shop@example.com",
                                                        "password": "an smtp passphrase"}}}
SMTP_PASSWORD = "BAZAAR__NOTIFICATIONS__SMTP__PASSWORD"


class TheMail(unittest.TestCase):
    """notifications.*: the settings in the ConfigMap, the SMTP password in the Secret, read only by
    the processes hosting notifications."""

    def assert_password_only_where_notifications_is_hosted(self, r, secret, jobs_secret):
        workloads = r.deployments() + r.deployments("canary") + r.of("Job")
        self.assertTrue(any("notifications" in hosted(w) for w in workloads))
        for w in workloads:
            e = env(w)
            if "notifications" in hosted(w):
                wanted = jobs_secret if w["kind"] == "Job" else secret
                self.assertEqual(e.get(SMTP_PASSWORD), ("secret", wanted, "smtp-password"), w["metadata"]["name"])
            else:
                self.assertNotIn(SMTP_PASSWORD, e, w["metadata"]["name"])
        self.assertNotIn(SMTP_PASSWORD, r.config(), "a secret stays out of the ConfigMap")

    def test_by_default_messages_are_files_and_no_smtp_setting_is_rendered(self):
        r = render()
        self.assertEqual(r.config()["BAZAAR__NOTIFICATIONS__TRANSPORT"], "file")
        self.assertEqual([k for k in r.config() if k.startswith("BAZAAR__NOTIFICATIONS__SMTP__")], [])
        self.assertNotIn("smtp-password", r.one("Secret", "shop-bazaar")["data"])
        for d in r.deployments():
            self.assertNotIn(SMTP_PASSWORD, env(d))

    def test_the_split_with_every_option_sends_over_smtp_with_the_password_read_only_where_notifications_is_hosted(self):
        r = render(SPLIT, SPLIT_URLS, EXTRAS)
        with open(EXTRAS) as f:
            mail = yaml.safe_load(f)["notifications"]
        config = r.config()
        self.assertEqual({k: v for k, v in config.items() if k.startswith("BAZAAR__NOTIFICATIONS__")}, {
            "BAZAAR__NOTIFICATIONS__TRANSPORT": "smtp",
            "BAZAAR__NOTIFICATIONS__FROM": mail["from"],
            "BAZAAR__NOTIFICATIONS__SHOP_NAME": mail["shopName"],
            "BAZAAR__NOTIFICATIONS__SHOP_URL": mail["shopUrl"],
            "BAZAAR__NOTIFICATIONS__SMTP__HOST": mail["smtp"]["host"],
            "BAZAAR__NOTIFICATIONS__SMTP__PORT": str(mail["smtp"]["port"]),
            "BAZAAR__NOTIFICATIONS__SMTP__TLS": mail["smtp"]["tls"],
            "BAZAAR__NOTIFICATIONS__SMTP__USERNAME": mail["smtp"]["username"],
        })
        for name in ["shop-bazaar", "shop-bazaar-migrations"]:
            data = r.one("Secret", name)["data"]
            self.assertEqual(base64.b64decode(data["smtp-password"]).decode(), mail["smtp"]["password"], name)
        self.assert_password_only_where_notifications_is_hosted(r, "shop-bazaar", "shop-bazaar-migrations")
        # values-split.yaml hosts it with the modules no other Deployment names.
        self.assertIn(SMTP_PASSWORD, env(r.one("Deployment", "shop-bazaar-others")))

    def test_the_monolith_reads_the_password_and_an_existing_secret_holds_it(self):
        r = render(values=SMTP)
        [d] = r.deployments()
        self.assertEqual(env(d)[SMTP_PASSWORD], ("secret", "shop-bazaar", "smtp-password"))
        r = render(THREE, values={"notifications": {"transport": "smtp", "smtp": {"host": "smtp.example.com", "username": "shop"}}})
        self.assertEqual(r.of("Secret"), [])
        self.assert_password_only_where_notifications_is_hosted(r, "bazaar-secrets", "bazaar-secrets")

    def test_without_a_username_there_is_no_login_and_no_password(self):
        r = render(SPLIT, SPLIT_URLS, values={"notifications": {"transport": "smtp", "smtp": {"host": "mail", "tls": "none"}}})
        self.assertEqual(r.config()["BAZAAR__NOTIFICATIONS__SMTP__TLS"], "none")
        self.assertNotIn("BAZAAR__NOTIFICATIONS__SMTP__USERNAME", r.config())
        self.assertNotIn("smtp-password", r.one("Secret", "shop-bazaar")["data"])
        for w in r.deployments() + r.of("Job"):
            self.assertNotIn(SMTP_PASSWORD, env(w))

    def test_a_new_smtp_password_restarts_the_pods(self):
        before = checksum(render(values=SMTP).deployments()[0])
        rotated = json.loads(json.dumps(SMTP))
        rotated["notifications"]["smtp"]["password"] = "a rotated passphrase"
        self.assertNotEqual(checksum(render(values=rotated).deployments()[0]), before)
        self.assertEqual(checksum(render(values=SMTP).deployments()[0]), before)

    def test_env_overrides_a_setting_and_secret_env_may_not_set_the_password_the_chart_sets(self):
        r = render(values=with_values(SMTP, env={"BAZAAR__NOTIFICATIONS__SMTP__TIMEOUT_SECS": 30}))
        self.assertEqual(r.config()["BAZAAR__NOTIFICATIONS__SMTP__TIMEOUT_SECS"], "30")
        error = render_error(values=with_values(SMTP, secretEnv={SMTP_PASSWORD: "smtp-password"}))
        self.assertIn(f"secretEnv.{SMTP_PASSWORD}: the chart (Deployment monolith", error)

    def test_the_readme_example_renders_with_the_password_given_on_the_command_line(self):
        readme = (CHART / "README.md").read_text()
        [block] = [b for b in (yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)) if "notifications" in b]
        error = render_error(values=block, flags=["--skip-schema-validation"])
        self.assertIn("notifications.smtp.password: the SMTP login", error)
        block["notifications"]["smtp"]["password"] = "an smtp passphrase"
        r = render(values=block)
        self.assertEqual(r.config()["BAZAAR__JOBS__CONCURRENCY"], "8")
        self.assertEqual(r.config()["BAZAAR__NOTIFICATIONS__SMTP__USERNAME"], block["notifications"]["smtp"]["username"])
        self.assertEqual(env(r.deployments()[0])[SMTP_PASSWORD], ("secret", "shop-bazaar", "smtp-password"))

    def test_smtp_without_a_host_or_half_a_login_does_not_render(self):
        for smtp, expected in [({}, "notifications.smtp.host: transport smtp needs the mail server's host name"),
                               ({"host": "mail", "password": "p"}, "notifications.smtp.password: given without notifications.smtp.username"),
                               ({"host": "mail", "username": "u"}, "notifications.smtp.password: the SMTP login")]:
            error = render_error(values={"notifications": {"transport": "smtp", "smtp": smtp}}, flags=["--skip-schema-validation"])
            self.assertIn(expected, error)
        # The file transport ignores the server's settings.
        render(values={"notifications": {"smtp": {"username": "u"}}})


class ThePlaceholders(unittest.TestCase):
    def test_values_split_unchanged_does_not_render_and_names_each_change_me_value(self):
        error = render_error(SPLIT)
        self.assertIn("CHANGE-ME", error)
        for key in ["bus.rabbitmq.url", "database.url", "database.modules.users"]:
            self.assertIn(key, error)

    def test_one_placeholder_left_is_named(self):
        error = render_error(SPLIT, values={"bus": {"rabbitmq": {"url": "amqp://bazaar:secret@rabbitmq:5672/%2f"}},
                                            "database": {"url": "postgres://bazaar:secret@postgres:5432/{module}"}})
        self.assertIn("database.modules.users", error)
        self.assertNotIn("database.url", error.replace("database.modules", ""))


NGINX_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}


class TheNetworkPolicy(unittest.TestCase):
    def peers(self, r, name="shop-bazaar-monolith"):
        [rule] = r.one("NetworkPolicy", name)["spec"]["ingress"]
        self.assertEqual(rule["ports"], [{"port": "http", "protocol": "TCP"}])
        return rule["from"]

    def test_by_default_pods_of_any_namespace_reach_the_http_port_whatever_the_ingress_controller(self):
        self.assertIn({"namespaceSelector": {}}, self.peers(render()))

    def test_ingress_controller_from_narrows_it_to_the_controllers_pods(self):
        peers = self.peers(render(values={"networkPolicy": {"ingressController": {"from": [NGINX_PEER]}}}))
        self.assertIn(NGINX_PEER, peers)
        self.assertNotIn({"namespaceSelector": {}}, peers)
        # Prometheus and the release's own pods keep their way in.
        self.assertIn({"podSelector": {"matchLabels": {"app.kubernetes.io/name": "bazaar", "app.kubernetes.io/instance": "shop"}}}, peers)
        self.assertEqual(len(peers), 3)

    def test_the_readme_shows_the_narrowing_the_test_renders(self):
        readme = (CHART / "README.md").read_text()
        blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", readme, re.S)]
        self.assertIn({"networkPolicy": {"ingressController": {"from": [NGINX_PEER]}}}, blocks)


SCHEDULING = {
    "podAnnotations": {"example.com/team": "shop"},
    "nodeSelector": {"kubernetes.io/os": "linux", "pool": "general"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "shop", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}]}]}}},
}


class TheMigrationJobs(unittest.TestCase):
    def test_a_job_is_scheduled_and_annotated_like_the_deployment_hosting_its_module(self):
        r = render(SPLIT, SPLIT_URLS, values={"deploymentDefaults": SCHEDULING,
                                              "deployments": {"orders": {"nodeSelector": {"pool": "orders"},
                                                                         "podAnnotations": {"example.com/team": "orders"}}}})
        hosts = {m: d for d in r.deployments() for m in hosted(d)}
        for job in r.of("Job"):
            deployment = hosts[container(job)["args"][2]]
            for field in ["nodeSelector", "tolerations", "affinity"]:
                self.assertEqual(pod(job).get(field), pod(deployment).get(field), f"{job['metadata']['name']}: {field}")
            self.assertEqual(job["spec"]["template"]["metadata"]["annotations"]["example.com/team"],
                             deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"])
        orders = r.one("Job", "shop-bazaar-migrate-orders")
        self.assertEqual(pod(orders)["nodeSelector"], {"kubernetes.io/os": "linux", "pool": "orders"})
        self.assertEqual(orders["spec"]["template"]["metadata"]["annotations"]["example.com/team"], "orders")
        self.assertEqual(pod(r.one("Job", "shop-bazaar-migrate-users"))["tolerations"], SCHEDULING["tolerations"])

    def test_the_jobs_opt_out_of_sidecar_injection_unless_told_otherwise(self):
        [job] = render(ONE_ON_POSTGRES).of("Job")
        meta = job["spec"]["template"]["metadata"]
        self.assertEqual(meta["labels"]["sidecar.istio.io/inject"], "false")
        self.assertEqual(meta["annotations"]["linkerd.io/inject"], "disabled")
        r = render(ONE_ON_POSTGRES, values={"migrations": {"sidecarInjection": True}})
        [job] = r.of("Job")
        meta = job["spec"]["template"]["metadata"]
        self.assertNotIn("sidecar.istio.io/inject", meta["labels"])
        self.assertNotIn("linkerd.io/inject", meta.get("annotations", {}))
        self.assertNotIn("sidecar.istio.io/inject", r.deployments()[0]["spec"]["template"]["metadata"]["labels"])


# Helm refuses release names over 53 characters; with `-bazaar-<key>` the names go past 63.
LONG_RELEASE = "a-shop-with-a-release-name-of-the-longest-length-helm"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class LongNames(unittest.TestCase):
    def names(self, r):
        return [(o["kind"], o["metadata"]["name"]) for o in r.objects]

    def assert_valid_and_unique(self, r):
        names = self.names(r)
        for kind, name in names:
            self.assertLessEqual(len(name), 63, f"{kind}/{name}")
            self.assertRegex(name, DNS_LABEL)
        self.assertEqual(len(names), len(set(names)), "two objects of a kind share a name")
        self.assertEqual(len({n for _, n in names if _ in ("Deployment", "Job")}),
                         len([n for k, n in names if k in ("Deployment", "Job")]), "pods of two workloads would share a prefix")

    def assert_references_resolve(self, r):
        """Every name one object gives another is that object's name."""
        for ingress in r.of("Ingress"):
            for rule in ingress["spec"]["rules"]:
                for p in rule["http"]["paths"]:
                    r.one("Service", p["backend"]["service"]["name"])
        for hpa in r.of("HorizontalPodAutoscaler"):
            r.one("Deployment", hpa["spec"]["scaleTargetRef"]["name"])
        for vs in r.of("VirtualService"):
            for route in vs["spec"]["http"][0]["route"]:
                r.one("Service", route["destination"]["host"])
        secrets = {s["metadata"]["name"] for s in r.of("Secret")} | {"bazaar-secrets"}  # THREE's existingSecret
        for w in r.deployments("stable") + r.deployments("canary") + r.of("Job"):
            for ref in container(w).get("envFrom", []):
                r.one("ConfigMap", ref["configMapRef"]["name"])
            for _, ref in secret_refs(w):
                self.assertIn(ref["name"], secrets)
            jwks = env(w).get("BAZAAR__AUTH__JWKS_URL")
            if jwks:
                r.one("Service", jwks.split("/")[2].split(":")[0])
        for d in r.of("Deployment"):
            self.assertIn(pod(d)["serviceAccountName"], {s["metadata"]["name"] for s in r.of("ServiceAccount")})

    def test_a_53_character_release_gives_unique_names_of_63_characters_at_most(self):
        self.assertEqual(len(LONG_RELEASE), 53)
        for r in [render(SPLIT, SPLIT_URLS, EXTRAS, release=LONG_RELEASE), render(THREE, release=LONG_RELEASE),
                  render(release=LONG_RELEASE)]:
            self.assert_valid_and_unique(r)
            self.assert_references_resolve(r)

    def test_two_long_full_names_sharing_their_first_63_characters_give_different_names(self):
        prefix = "bazaar-" + "x" * 60
        east = render(SPLIT, SPLIT_URLS, values={"fullnameOverride": prefix + "-east"})
        west = render(SPLIT, SPLIT_URLS, values={"fullnameOverride": prefix + "-west"})
        for r in [east, west]:
            self.assert_valid_and_unique(r)
            self.assert_references_resolve(r)
        self.assertEqual(set(self.names(east)) & set(self.names(west)), set())

    def test_the_alerts_select_the_releases_services_by_their_names_however_long(self):
        r = render(SPLIT, SPLIT_URLS, EXTRAS, release=LONG_RELEASE)
        [rule] = r.of("PrometheusRule")
        services = {s["metadata"]["name"] for s in r.of("Service")}
        for group in rule["spec"]["groups"]:
            for alert in group["rules"]:
                [selected] = set(re.findall(r'service=~"([^"]+)"', alert["expr"]))
                self.assertEqual(set(selected.split("|")), services, alert["alert"])

    def test_short_names_are_unchanged(self):
        names = self.names(render(SPLIT, SPLIT_URLS))
        self.assertIn(("Deployment", "shop-bazaar-orders"), names)
        self.assertIn(("Job", "shop-bazaar-migrate-orders"), names)


class TheDashboard(unittest.TestCase):
    def dashboard(self, release, namespace):
        r = render(values={"metrics": {"grafanaDashboard": {"enabled": True}}}, release=release, namespace=namespace)
        [cm] = [c for c in r.of("ConfigMap") if "bazaar.json" in c.get("data", {})]
        return json.loads(cm["data"]["bazaar.json"])

    def test_each_release_has_its_own_dashboard_uid_and_title(self):
        dashboards = [self.dashboard(rel, ns) for rel, ns in [("shop", "shop"), ("shop2", "shop"), ("shop", "staging")]]
        self.assertEqual(len({d["uid"] for d in dashboards}), 3)
        self.assertEqual(len({d["title"] for d in dashboards}), 3, "Grafana refuses two titles alike in a folder")
        for d in dashboards:
            self.assertRegex(d["uid"], r"^[a-zA-Z0-9_-]{1,40}$")
        self.assertEqual(self.dashboard("shop", "shop")["uid"], dashboards[0]["uid"], "stable across upgrades")


class TheServer(unittest.TestCase):
    def test_the_processes_trust_forwarded_headers_from_the_private_ranges_by_default(self):
        r = render()
        self.assertEqual(r.config()["BAZAAR__SERVER__TRUSTED_PROXIES"], "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16")

    def test_server_trusted_proxies_narrows_them_and_an_empty_list_trusts_none(self):
        r = render(values={"server": {"trustedProxies": ["10.42.0.0/16", "fd00:42::/56"]}})
        self.assertEqual(r.config()["BAZAAR__SERVER__TRUSTED_PROXIES"], "10.42.0.0/16,fd00:42::/56")
        self.assertNotIn("BAZAAR__SERVER__TRUSTED_PROXIES", render(values={"server": {"trustedProxies": []}}).config())

    def test_on_sigterm_a_process_stays_in_service_for_the_delay_then_drains_within_the_grace_period(self):
        r = render(SPLIT, SPLIT_URLS)
        config = r.config()
        delay, timeout = int(config["BAZAAR__SERVER__SHUTDOWN_DELAY_SECS"]), int(config["BAZAAR__SERVER__SHUTDOWN_TIMEOUT_SECS"])
        self.assertEqual((delay, timeout), (5, 30))
        for d in r.of("Deployment"):
            self.assertEqual(pod(d)["terminationGracePeriodSeconds"], 45)
            self.assertGreater(pod(d)["terminationGracePeriodSeconds"], delay + timeout)
        config = render(values={"server": {"shutdownDelaySecs": 10, "shutdownTimeoutSecs": 20}}).config()
        self.assertEqual((config["BAZAAR__SERVER__SHUTDOWN_DELAY_SECS"], config["BAZAAR__SERVER__SHUTDOWN_TIMEOUT_SECS"]), ("10", "20"))

    def test_a_grace_period_the_delay_and_the_shutdown_timeout_do_not_fit_under_does_not_render(self):
        error = render_error(values={"deploymentDefaults": {"terminationGracePeriodSeconds": 35}})
        self.assertIn("terminationGracePeriodSeconds", error)
        self.assertIn("server.shutdownDelaySecs", error)
        error = render_error(SPLIT, SPLIT_URLS, values={"deployments": {"orders": {"terminationGracePeriodSeconds": 30}}})
        self.assertIn("deployments.orders", error)
        error = render_error(values={"server": {"shutdownDelaySecs": 20}})
        self.assertIn("terminationGracePeriodSeconds", error)


class TheValues(unittest.TestCase):
    def leaves(self, value, path=()):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                yield from self.leaves(v, path + (k,))
        else:
            yield path

    def test_the_schema_describes_every_value(self):
        schema = json.loads((CHART / "values.schema.json").read_text())
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        for path in self.leaves(values):
            node, named = schema, None
            for key in path:
                if node.get("$ref"):
                    node = schema["definitions"][node["$ref"].split("/")[-1]]
                props = node.get("properties", {})
                if node.get("type") == "object" and not props and "additionalProperties" not in node:
                    break  # A Kubernetes object passed through as a whole (podSecurityContext, affinity…).
                if key in props:
                    node = named = props[key]
                elif isinstance(node.get("additionalProperties"), dict):
                    # An entry of a map (deployments, resources.limits…): the map describes it.
                    node = node["additionalProperties"]
                    node = next((o for o in node.get("oneOf", [node]) if o.get("type") != "null"), node)
                else:
                    self.fail(f"values.schema.json does not describe {'.'.join(path)}")
            self.assertTrue(named.get("description"), f"{'.'.join(path)} has no description")

    def test_the_readme_documents_every_value(self):
        readme = (CHART / "README.md").read_text()
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
        for path in self.leaves(values):
            # Maps of free-form entries (resources, selectors) are documented as a whole.
            prefixes = {".".join(path[:i]) for i in range(1, len(path) + 1)}
            self.assertTrue(prefixes & documented, f"README.md's values table misses {'.'.join(path)}")


if __name__ == "__main__":
    unittest.main()
