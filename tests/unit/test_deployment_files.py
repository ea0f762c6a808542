"""The files users deploy from must stay true to the code: every setting documented, every service deployed, the
image built from packages that exist."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import typer
import yaml

from events.topics import replication_for
from jobmeter.settings import DEVELOPMENT_SECRETS, Settings
from services.cli.run import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting() -> None:
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    expected = {name.upper() for name in Settings.model_fields}
    assert expected - documented == set(), "add these to .env.example"
    stack_only = {"JOBMETER_STATE_DIR", "JOBMETER_CACHE_DIR"}  # read by `jobmeter stack`, not by Settings
    assert documented - expected - stack_only == set(), "these are in .env.example but not in Settings"


def test_compose_runs_every_consumer_and_only_known_services() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = {
        name: spec["command"] for name, spec in compose["services"].items() if spec.get("image") == "jobmeter:local"
        or "build" in spec or "<<" in spec
    }
    run_targets = {cmd[1] for cmd in commands.values() if cmd[:1] == ["run"]}
    assert run_targets <= set(SERVICES)
    assert set(SERVICES) - {"all"} <= run_targets, "every service needs a container in docker-compose.yml"


def test_dockerfile_copies_what_exists_and_installs_the_entry_point() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [src for line in re.findall(r"^COPY\s+(.+)$", dockerfile, re.M) for src in line.split()[:-1]]
    assert sources and [s for s in sources if not (ROOT / s).exists()] == [], "the Dockerfile copies a missing path"
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert packages <= set(sources), "the image needs every package"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, _, attribute = pyproject["project"]["scripts"]["jobmeter"].partition(":")
    assert isinstance(getattr(importlib.import_module(module), attribute), typer.Typer)
    assert re.search(r'^ENTRYPOINT \["jobmeter"\]$', dockerfile, re.M)


def test_package_data_points_at_packages_that_hold_it() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package, patterns in pyproject["tool"]["setuptools"]["package-data"].items():
        if package == "*":
            continue
        folder = ROOT.joinpath(*package.split("."))
        assert (folder / "__init__.py").exists(), f"package-data names {package}, which is no package"
        assert all(list(folder.glob(pattern)) for pattern in patterns), (package, patterns)


def test_compose_requires_each_shared_secret_and_runs_in_production() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["x-jobmeter"]["environment"]
    assert environment["JOBMETER_ENV"] == "production"
    for field in DEVELOPMENT_SECRETS:
        name = field.upper()
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", environment[name]), f"{name} must be required, not defaulted"
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / ".env.example").read_text()
    assert not [value for value in DEVELOPMENT_SECRETS.values() if value in text], "a published secret is offered"


def test_compose_runs_a_three_node_kraft_cluster_and_replicates_on_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    nodes = {name: spec for name, spec in compose["services"].items() if spec.get("image", "").startswith("apache/")}
    assert len(nodes) == 3, "a quorum of three voters: one node may be down"
    env = {name: spec["environment"] for name, spec in nodes.items()}
    ids = {name: e["KAFKA_NODE_ID"] for name, e in env.items()}
    assert sorted(ids.values()) == ["1", "2", "3"]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in env.values()}
    assert voters == {",".join(f"{ids[name]}@{name}:9093" for name in sorted(nodes, key=ids.__getitem__))}
    assert {e["CLUSTER_ID"] for e in env.values()} != {None} and len({e["CLUSTER_ID"] for e in env.values()}) == 1
    for name, e in env.items():
        assert e["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert e["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
    assert len({volume for spec in nodes.values() for volume in spec["volumes"]}) == 3, "a disk of its own each"
    # The cluster's own topics and jobmeter's are replicated alike: three copies, two in sync for acks=all.
    wanted = replication_for(3)
    for e in env.values():
        assert (e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], e["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"],
                e["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == (str(wanted.factor),) * 3
        assert (e["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"], e["KAFKA_MIN_INSYNC_REPLICAS"]) == (
            str(wanted.min_insync),) * 2
    jobmeter = compose["x-jobmeter"]
    assert jobmeter["environment"]["KAFKA_BOOTSTRAP_SERVERS"].split(",") == [f"{node}:9092" for node in sorted(nodes)]
    assert (jobmeter["environment"]["JOBMETER_REPLICATION_FACTOR"],
            jobmeter["environment"]["JOBMETER_MIN_INSYNC_REPLICAS"]) == (str(wanted.factor), str(wanted.min_insync))
    assert {name: dep["condition"] for name, dep in jobmeter["depends_on"].items() if name in nodes} == dict.fromkeys(
        nodes, "service_healthy")
