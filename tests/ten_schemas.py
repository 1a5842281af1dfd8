"""Load TEN's own JSON Schemas (shared/schemas/ten) the way TEN's tooling does.

The files are JSONC: whole-line `//` comments and trailing `// ...` after
`{`, `[` or `,` are stripped, then the shared `$defs` are merged in.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO_ROOT.parent / "shared" / "schemas" / "ten"

_TRAILING_COMMENT = re.compile(r"([{\[,])\s*//.*$")


def strip_jsonc(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("//"):
            continue
        lines.append(_TRAILING_COMMENT.sub(r"\1", line))
    return "\n".join(lines)


def load_schema(name: str) -> dict[str, Any]:
    """`name` is e.g. "manifest" or "property"."""
    schema = json.loads(strip_jsonc((SCHEMA_DIR / f"{name}.schema.json").read_text()))
    shared = json.loads(strip_jsonc((SCHEMA_DIR / "shared-definitions.schema.json").read_text()))
    schema.setdefault("$defs", {}).update(shared.get("$defs", {}))
    return schema


def validation_errors(instance: Any, schema_name: str) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(load_schema(schema_name))
    return sorted(
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in validator.iter_errors(instance)
    )
