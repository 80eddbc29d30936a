"""The core, sgx/, is grouped by concern with no circle: no module of it imports, however
indirectly, a module that imports it (the layers between its packages are import-linter's
contract in pyproject.toml; this checks the modules inside them too)."""

from __future__ import annotations

import grimp


def test_no_module_of_the_core_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph("sgx")
    cycles = sorted(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("sgx.") and graph.chain_exists(importer=imported, imported=importer)
    )
    assert not cycles, cycles


def test_the_core_is_grouped_by_concern() -> None:
    graph = grimp.build_graph("sgx")
    flat = sorted(m for m in graph.find_children("sgx") if not graph.find_children(m))
    assert flat == ["sgx.errors", "sgx.settings"], "only the ground is left at the top"
