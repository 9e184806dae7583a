"""docker-compose.yml and the Dockerfile are consistent (no Docker engine runs here)."""

from __future__ import annotations

import re

import yaml

from conftest import FIXTURE
from visdoc.cli import _parser
from visdoc.server import check_exposure

ROOT = FIXTURE.parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_ports_volumes_and_healthchecks():
    spec = compose()
    services = spec["services"]
    assert {"qdrant", "embeddings", "app"} <= set(services)
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", services["qdrant"]["image"])  # pinned, not latest
    assert {"6333:6333", "6334:6334"} <= set(services["qdrant"]["ports"])
    assert "${VISDOC_PUBLISH:-127.0.0.1}:8080:8080" in services["embeddings"]["ports"]  # loopback unless asked
    for name in ("qdrant", "embeddings"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    named = set(spec["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in named  # every named volume is declared (persistent)
    assert "qdrant_storage:/qdrant/storage" in services["qdrant"]["volumes"]
    assert "model_cache:/models" in services["embeddings"]["volumes"]
    assert services["embeddings"]["environment"]["HF_HOME"] == "/models"


def test_embedding_server_reserves_a_gpu_and_runs_a_valid_command():
    embeddings = compose()["services"]["embeddings"]
    [device] = embeddings["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    command = embeddings["command"]
    assert command[:2] == ["visdoc", "serve"]
    args = _parser().parse_args(command[1:])  # the flags exist in this version of the CLI
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    assert embeddings["environment"]["VISDOC_API_KEY"] == "${VISDOC_API_KEY:-}"  # often empty: then
    check_exposure(args.host, args.port, None, allow_no_key=args.allow_no_key)  # it must still start
    assert "/health" in " ".join(embeddings["healthcheck"]["test"])


def test_app_uses_both_services_once_they_are_healthy():
    app = compose()["services"]["app"]
    assert app["depends_on"] == {"qdrant": {"condition": "service_healthy"},
                                 "embeddings": {"condition": "service_healthy"}}  # fmt: skip
    assert app["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert app["environment"]["VISDOC_EMBEDDING_URL"] == "http://embeddings:8080"
    assert (ROOT / app["command"][1]).is_file()


def test_cluster_profile_has_three_bootstrapped_nodes():
    services = compose()["services"]
    nodes = {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}
    assert sorted(nodes) == ["qdrant-node1", "qdrant-node2", "qdrant-node3"]
    for name, node in nodes.items():
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert f"http://{name}:6335" in node["command"]
        if name != "qdrant-node1":
            assert "--bootstrap" in node["command"] and "http://qdrant-node1:6335" in node["command"]


def test_dockerfile_installs_what_the_services_run():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'pip install ".[server,langchain,llamaindex]"' in dockerfile and "EXPOSE 8080" in dockerfile
    for source in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        assert (ROOT / source).exists(), source
