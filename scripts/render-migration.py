#!/usr/bin/env python3
"""Write the next migration of a kind of database: the Alembic operations that take the
tables a database of the previous release holds to the tables this release's code defines.

    .venv/bin/python scripts/render-migration.py KIND [--from-db OLD.db]

``OLD.db`` is a SQLite database of that kind at the previous release's newest revision
(e.g. ``safeguard db upgrade`` run with the previous release on a copy); without it the
operations create every table (a first revision). Paste the printed ``upgrade()`` and
``downgrade()`` bodies into ``sgx/store/migrations/<KIND>/versions/<NNNN>_<KIND>.py`` with the
next revision id, read them, and run ``tests/unit/test_migrations.py``, which fails until
the history builds exactly what the code defines.
"""

from __future__ import annotations

import argparse

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from safeguard.store_tables import TABLES, tables_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(TABLES))
    parser.add_argument("--from-db", default=None, help="a SQLite database of the previous release")
    args = parser.parse_args()
    wanted = tables_of(args.kind, create_async_engine("sqlite+aiosqlite://"), MetaData())
    engine = create_engine(f"sqlite:///{args.from_db}" if args.from_db else "sqlite://")
    with engine.connect() as conn:
        ops = produce_migrations(MigrationContext.configure(conn), wanted)
    for name, part in (("upgrade", ops.upgrade_ops), ("downgrade", ops.downgrade_ops)):
        print(f"def {name}() -> None:")
        print(render_python_code(part, user_module_prefix="sgx.store.db."))


if __name__ == "__main__":
    main()
