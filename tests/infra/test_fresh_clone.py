"""The deploy path from a fresh clone, offline: `git clone`, then plain `cdk bootstrap` and `cdk synth`
against a local moto server standing in for AWS. bootstrap builds nothing; synth builds every Lambda
package through the CDK app itself. The clone shares this checkout's .venv and node_modules (by
symlink: `make install` would make the same). A full `cdk deploy` onto moto is out of reach (its
CloudFormation lacks AWS::ApiGatewayV2::*)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra import bundle, spec

from .conftest import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"
ENVIRONMENT = "aws://123456789012/us-east-1"

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(not CDK.exists(), reason="no CDK CLI: run `make install` (npm ci)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_endpoint():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        # localhost, not 127.0.0.1: moto reads a template URL's bucket from the path only for it.
        yield f"http://localhost:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())
    (target / "node_modules").symlink_to((ROOT / "node_modules").resolve())
    return target


def cdk(clone: Path, endpoint: str, *args: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_", "JSII_"))} | {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    # `npx cdk` resolves to node_modules/.bin/cdk, the pinned CLI.
    return subprocess.run(
        ["npx", "--no-install", "cdk", *args, "--no-notices"],
        cwd=clone,
        env=environment,
        capture_output=True,
        text=True,
        timeout=800,
    )


def test_bootstrap_then_synth_on_a_fresh_clone(clone: Path, moto_endpoint: str) -> None:
    # Given a fresh clone: no build/, no cdk.out/
    assert not (clone / "build").exists()

    # When bootstrapping as `make bootstrap` does: no environment given, so the CDK runs the app to
    # find it (the stack's default account and region: moto's and AWS_REGION)
    bootstrap = cdk(clone, moto_endpoint, "bootstrap")
    assert bootstrap.returncode == 0, bootstrap.stderr[-3000:]
    # The CDK CLI logs to stderr, or to stdout when CI=true (as CI runs it).
    assert f"Environment {ENVIRONMENT} bootstrapped" in bootstrap.stdout + bootstrap.stderr
    assert not (clone / "build").exists()  # bootstrap built nothing

    # And synthesizing
    synth = cdk(clone, moto_endpoint, "synth", "--quiet")
    assert synth.returncode == 0, synth.stderr[-3000:]

    # Then each function's asset is its complete package, built by the CDK app
    out = clone / "cdk.out"
    template = json.loads((out / "MediaGeneration-dev.template.json").read_text())
    functions = {
        r["Properties"]["FunctionName"].rsplit("-", 1)[-1]: r["Metadata"]["aws:asset:path"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and "FunctionName" in r["Properties"]
    }
    assert set(functions) == set(spec.FUNCTIONS)
    tag = "cpython-" + spec.LAMBDA_PYTHON.replace(".", "")
    for name, asset in functions.items():
        package = out / asset
        assert (package / "app.py").is_file() and (package / "shared" / "__init__.py").is_file(), name
        sources = list(package.rglob("*.py"))
        compiled = {p.parent.parent / (p.name.split(".")[0] + ".py") for p in package.rglob(f"*.{tag}.pyc")}
        assert sources and not set(sources) - compiled, f"{name}: modules without {tag} bytecode"
        models = {p.name for p in (package / "botocore" / "data").iterdir() if p.is_dir()}
        assert models == set(bundle.BOTOCORE_SERVICES), name
        assert (package / "PIL").is_dir() == (name == "worker"), name  # Pillow only where images are made
