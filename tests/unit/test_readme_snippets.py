"""The receiver snippets in the README verify real signatures (so the docs cannot drift)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from meshanics import signing

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(language: str, marker: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if marker in b)


def test_node_snippet_verifies_and_rejects() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed to check the README's Node snippet"
    secret = signing.generate_secret()
    body = b'{"specversion":"1.0","sequence":1}'
    header = signing.meshanics_signature([signing.generate_secret(), secret], int(time.time()), body)
    program = _block("js", "function verify") + (
        "\nconst [raw, header, secret] = process.argv.slice(-3);"
        "\nconst body = Buffer.from(raw);"
        "\nconsole.log(verify(body, header, secret));"
        "\ntry { verify(Buffer.concat([body, Buffer.from(' ')]), header, secret); "
        "console.log('accepted'); } catch (e) { console.log('rejected: ' + e.message); }"
    )
    result = subprocess.run(
        [node, "-e", program, body.decode(), header, secret], capture_output=True, text=True, check=True
    )
    timestamp, tampered = result.stdout.split("\n")[:2]
    assert int(timestamp) == int(header.split(",")[0].removeprefix("t="))
    assert tampered == "rejected: no signature matches"


def test_python_snippet_uses_the_real_verify() -> None:
    snippet = _block("python", "def handle")
    namespace: dict[str, object] = {}
    exec(compile(snippet.replace("    ...  #", "    #"), "README", "exec"), namespace)
    secret = signing.generate_secret()
    namespace["SECRET"] = secret
    body = b'{"sequence":1}'
    good = {"X-Meshanics-Signature": signing.meshanics_signature([secret], int(time.time()), body)}
    handle = namespace["handle"]
    assert callable(handle)
    assert handle(body, good) == 204
    assert handle(body + b" ", good) == 401
    assert handle(body, {}) == 401


@pytest.mark.parametrize("command", ["make run", "make test", "make bench"])
def test_readme_names_the_contract_commands(command: str) -> None:
    assert command in README.read_text()
