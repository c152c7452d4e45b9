"""oci/build.sh builds the image Istio pulls: FROM scratch, a single layer holding exactly
/plugin.wasm (the layout Istio's image fetcher accepts), byte-identical to the release module.
Skipped without a Docker engine or without the release .wasm."""

import json
import os
import shutil
import subprocess
import tarfile

import pytest
from artifacts_support import REPO, require_wasm

# What `docker export` adds to every container's filesystem, whatever the image holds.
DOCKER_RUNTIME_ENTRIES = {
    ".dockerenv", "dev/", "dev/console", "dev/pts/", "dev/shm/", "etc/", "etc/hostname",
    "etc/hosts", "etc/mtab", "etc/resolv.conf", "proc/", "sys/",
}


def _docker():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker not installed")
    if subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("no Docker engine reachable")
    return docker


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    docker = _docker()
    wasm = require_wasm()
    work = tmp_path_factory.mktemp("oci")
    module = work / "session_router.wasm"
    shutil.copyfile(wasm, module)  # a snapshot: the build may be rewritten while we test
    tag = f"session-router-test:{os.getpid()}"
    env = dict(os.environ, SESSION_ROUTER_WASM=str(module))
    build = subprocess.run(["bash", str(REPO / "oci" / "build.sh"), tag], capture_output=True, text=True,
                           env=env, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    yield docker, tag, module.read_bytes(), work
    subprocess.run([docker, "rmi", tag], capture_output=True, timeout=120)


def test_image_has_one_layer_holding_only_plugin_wasm(image):
    docker, tag, module, work = image
    saved = work / "image.tar"
    subprocess.run([docker, "save", "-o", str(saved), tag], check=True, timeout=300)
    with tarfile.open(saved) as archive:
        (manifest,) = json.load(archive.extractfile("manifest.json"))
        assert len(manifest["Layers"]) == 1, manifest["Layers"]
        layer = tarfile.open(fileobj=archive.extractfile(manifest["Layers"][0]))
        assert layer.getnames() == ["plugin.wasm"]
        assert layer.extractfile("plugin.wasm").read() == module
        config = json.load(archive.extractfile(manifest["Config"]))
    assert config["config"].get("Labels", {}).get("org.opencontainers.image.title") == "session-router"


def test_container_filesystem_is_plugin_wasm(image):
    """`docker create` + `docker export | tar t`: nothing but /plugin.wasm besides what Docker
    itself puts into every container."""
    docker, tag, module, _ = image
    container = subprocess.run([docker, "create", tag, "/plugin.wasm"], capture_output=True, text=True,
                               check=True, timeout=120).stdout.strip()
    try:
        export = subprocess.run([docker, "export", container], capture_output=True, check=True, timeout=300).stdout
    finally:
        subprocess.run([docker, "rm", container], capture_output=True, timeout=120)
    listing = subprocess.run(["tar", "-t"], input=export, capture_output=True, check=True).stdout.decode().split()
    assert set(listing) - DOCKER_RUNTIME_ENTRIES == {"plugin.wasm"}
