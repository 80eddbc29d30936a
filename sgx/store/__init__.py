"""The stores' shared engine, their common shape and their versioned schemas (Alembic
migrations).
"""
