"""A YAML loader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys: set[Any] = set()
    for key_node, _ in node.value:  # the keys written here; `<<` merges may be overridden
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_all(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    return [doc for doc in yaml.load_all(text, StrictLoader) if doc]


def load(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), StrictLoader)  # noqa: S506 (a SafeLoader)
