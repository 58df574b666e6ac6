"""Helpers for the detector tests: fixture loading and secret extraction."""
import base64
import json
from pathlib import Path

import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_fixture(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def secret_values(objects) -> set[str]:
    """Every password/token inside the fixture's docker-config Secrets (to prove none leaks)."""
    values = set()
    for obj in objects:
        if obj.get("kind") == "List":
            values |= secret_values(obj["items"])
        if obj.get("kind") != "Secret":
            continue
        for encoded in (obj.get("data") or {}).values():
            try:
                config = json.loads(base64.b64decode(encoded))
            except ValueError:
                continue
            for entry in (config.get("auths", config)).values():
                user_pass = base64.b64decode(entry["auth"]).decode()
                values.add(user_pass.split(":", 1)[1])
                values.add(entry["auth"])
    return values
