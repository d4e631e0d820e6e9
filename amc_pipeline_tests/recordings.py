"""Amazon's Postman collection of the AMC API with its recorded live responses (in shared/, beside the
repository; CI lays a copy of shared/ beside its clone too): the evidence the simulator and the
contract tests compare against."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLLECTION = Path(__file__).resolve().parents[1].parent / "shared" / "amc" / "amc_postman_collection.json"


def recorded_items() -> Iterator[dict[str, Any]]:
    """Every request of the collection that has a recorded response, depth first, in file order."""

    def walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            if "item" in item:
                yield from walk(item["item"])
            elif item.get("response"):
                yield item

    yield from walk(json.loads(COLLECTION.read_text())["item"])
