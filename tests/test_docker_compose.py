"""docker/docker-compose.yml is well formed, and docker/README.md's test command matches it.

No Docker engine runs on the project's machines, so this checks the file's structure with
PyYAML: pinned image tags, health checks, loopback-only ports, Milvus waiting for healthy
etcd and MinIO, and the ports / credentials that the documented command uses.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")

DOCKER = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
README = DOCKER / "README.md"
DATABASES = {"qdrant": 6333, "postgres": 5432, "milvus": 19530}  # service -> container port


@pytest.fixture(scope="module")
def services() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    return compose["services"]


def published(service: dict) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of every published port, short or long syntax."""
    result = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ip, host, target = entry.get("host_ip", ""), entry.get("published"), entry["target"]
        else:
            parts = str(entry).split("/")[0].rsplit(":", 2)
            if len(parts) == 3:
                ip, host, target = parts
            elif len(parts) == 2:
                ip, (host, target) = "", parts
            else:
                ip, host, target = "", None, parts[0]
        result.append((ip, int(host) if host is not None else 0, int(target)))
    return result


def host_port(service: dict, container_port: int) -> int:
    ports = [host for _, host, target in published(service) if target == container_port]
    assert len(ports) == 1, f"container port {container_port} must be published exactly once"
    return ports[0]


def documented_commands() -> list[dict[str, str]]:
    """The environment assignments of every README command line that sets LFM_TEST_* variables."""
    commands = []
    for line in README.read_text().splitlines():
        if "LFM_TEST_" in line and not line.lstrip().startswith(("|", "#", "`LFM")):
            words = shlex.split(line)
            env = dict(word.split("=", 1) for word in words if re.match(r"^LFM_TEST_\w+=", word))
            if env:
                commands.append(env)
    return commands


def test_services_are_the_three_databases_and_milvus_dependencies(services):
    assert {"qdrant", "postgres", "milvus", "etcd", "minio"} <= set(services)


def test_every_image_has_a_pinned_tag(services):
    for name, service in services.items():
        image = service.get("image", "")
        repository, _, tag = image.rpartition(":")
        assert repository and tag and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and "latest" not in tag.lower(), f"{name}: image {image!r} is not pinned"
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:v1.")
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    assert re.fullmatch(r"milvusdb/milvus:v2\.5\.\d+", services["milvus"]["image"])


def test_databases_and_milvus_dependencies_have_health_checks(services):
    for name in [*DATABASES, "etcd", "minio"]:
        check = services[name].get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        test = check["test"]
        assert test and (isinstance(test, str) or test[0] in ("CMD", "CMD-SHELL")), f"{name}: bad test {test!r}"
        assert check.get("retries", 3) >= 1 and check.get("interval")


def test_qdrant_health_check_needs_no_curl_or_wget(services):
    # The qdrant/qdrant image ships neither (qdrant/qdrant#3491); a check that calls them never passes.
    test = services["qdrant"]["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(test[1:])
    assert "curl" not in command and "wget" not in command
    assert "/readyz" in command or "/healthz" in command


def test_published_ports_bind_loopback_only(services):
    for name, service in services.items():
        for ip, host, target in published(service):
            assert ip == "127.0.0.1", f"{name}: port {target} is published on {ip or 'all interfaces'}"
            assert host, f"{name}: port {target} has no fixed host port"
    for name, port in DATABASES.items():
        host_port(services[name], port)


def test_milvus_waits_for_healthy_etcd_and_minio(services):
    milvus = services["milvus"]
    depends = milvus.get("depends_on")
    assert isinstance(depends, dict), "depends_on must use the long form with conditions"
    for dependency in ("etcd", "minio"):
        assert depends.get(dependency, {}).get("condition") == "service_healthy", dependency
    environment = milvus.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    assert environment.get("ETCD_ENDPOINTS") == "etcd:2379"
    assert environment.get("MINIO_ADDRESS") == "minio:9000"


def test_bind_mounted_files_exist(services):
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).is_file(), f"{name}: {source} is missing"


def test_readme_command_matches_compose_file(services):
    text = README.read_text()
    assert "docker compose -f docker/docker-compose.yml up -d --wait" in text
    commands = documented_commands()
    assert commands, "docker/README.md documents no command with LFM_TEST_* variables"
    assert any("pytest tests/stores" in line and "LFM_TEST_PG_DSN" in line for line in text.splitlines())
    for env in commands:
        assert set(env) == {"LFM_TEST_QDRANT_URL", "LFM_TEST_PG_DSN", "LFM_TEST_MILVUS_URI"}

        qdrant = urlsplit(env["LFM_TEST_QDRANT_URL"])
        assert qdrant.scheme == "http" and qdrant.hostname == "127.0.0.1"
        assert qdrant.port == host_port(services["qdrant"], 6333)

        pg = urlsplit(env["LFM_TEST_PG_DSN"])
        pg_env = services["postgres"]["environment"]
        assert pg.scheme in ("postgresql", "postgres") and pg.hostname == "127.0.0.1"
        assert pg.port == host_port(services["postgres"], 5432)
        assert pg.username == pg_env.get("POSTGRES_USER", "postgres")
        assert pg.password == pg_env["POSTGRES_PASSWORD"]
        assert pg.path.lstrip("/") == pg_env.get("POSTGRES_DB", pg.username)

        milvus = urlsplit(env["LFM_TEST_MILVUS_URI"])
        assert milvus.scheme == "milvus" and milvus.hostname == "127.0.0.1"
        assert milvus.port == host_port(services["milvus"], 19530)


def test_serve_service_builds_the_server_and_waits_for_qdrant(services):
    serve = services["serve"]
    assert serve.get("profiles") == ["serve"], "the server must not start with the test databases"
    dockerfile = DOCKER.parent / serve["build"]["dockerfile"]
    assert (DOCKER / serve["build"]["context"]).resolve() == DOCKER.parent and dockerfile.is_file()
    entrypoint = next(line for line in dockerfile.read_text().splitlines() if line.startswith("ENTRYPOINT"))
    assert '"lfm-retrieval", "serve"' in entrypoint and '"0.0.0.0"' in entrypoint and '"8080"' in entrypoint
    assert host_port(serve, 8080) == 8080
    assert any(arg.startswith("--store=") and "qdrant://qdrant:6333/" in arg for arg in serve["command"])
    assert any(str(volume).endswith(":/models:ro") for volume in serve["volumes"])
    assert "/health" in " ".join(serve["healthcheck"]["test"])
    assert serve["depends_on"]["qdrant"]["condition"] == "service_healthy"
