"""The Kubernetes manifests in deploy/kubernetes use commands, flags and ports that exist:
they are parsed, and each ``shoal`` invocation is checked against the CLI's own parser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shoal.cluster.cli import main

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _containers(kind: str = "Deployment") -> list[dict[str, Any]]:
    return [c for d in _documents() if d["kind"] == kind
            for c in d["spec"]["template"]["spec"]["containers"]]


def _container(subcommand: str) -> dict[str, Any]:
    found = [c for c in _containers() if c["args"][0] == subcommand]
    assert len(found) == 1, f"one {subcommand} container expected, found {len(found)}"
    return found[0]


def _help(subcommand: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([subcommand, "--help"])
    return capsys.readouterr().out


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_manifests_parse_into_a_scheduler_deployment_and_service_and_a_worker_deployment() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in _documents())
    assert kinds == [("Deployment", "shoal-scheduler"), ("Deployment", "shoal-worker"),
                     ("Service", "shoal-scheduler")]
    for d in _documents():
        if d["kind"] == "Deployment":
            labels = d["spec"]["template"]["metadata"]["labels"]
            assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("subcommand", ["scheduler", "worker"])
def test_every_shoal_command_in_the_manifests_parses_with_the_cli(
    subcommand: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _container(subcommand)
    assert container["command"] == ["shoal"]
    args = [re.sub(r"\$\((\w+)\)", "10.0.0.9", a) for a in container["args"]]  # env expansion
    flags = [a for a in args if a.startswith("--")]
    help_text = _help(subcommand, capsys)
    missing = [f for f in flags if f not in help_text]
    assert missing == [], f"shoal {subcommand} has no {missing}"
    # The whole command line parses (stop before running anything).
    import shoal.cluster.cli as cli

    seen: list[Any] = []
    monkeypatch.setattr(cli, f"{subcommand}_main", lambda parsed: seen.append(parsed) or 0)
    assert main(args) == 0 and seen


def test_ports_match_between_commands_containers_and_service() -> None:
    scheduler = _container("scheduler")
    worker = _container("worker")
    sched_ports = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
    assert int(_flag(scheduler["args"], "--port")) == sched_ports["scheduler"]
    assert int(_flag(scheduler["args"], "--dashboard-address").rsplit(":", 1)[1]) \
        == sched_ports["dashboard"]
    service = next(d for d in _documents() if d["kind"] == "Service")
    by_target = {p["targetPort"]: p["port"] for p in service["spec"]["ports"]}
    assert set(by_target) == set(sched_ports)
    # Workers reach the scheduler by the Service's name and port.
    address = worker["args"][1]
    assert address == f"tcp://{service['metadata']['name']}:{by_target['scheduler']}"
    # A worker listens on the data port its container declares and advertises the same one.
    data_port = {p["name"]: p["containerPort"] for p in worker["ports"]}["data"]
    for flag in ("--listen-address", "--contact-address"):
        assert _flag(worker["args"], flag).endswith(f":{data_port}")
    assert "status.podIP" in str(worker["env"])


def test_the_token_comes_from_a_secret_never_from_the_command_line() -> None:
    for container in _containers():
        assert "--token" not in container["args"]
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["SHOAL_TOKEN"]["valueFrom"]
