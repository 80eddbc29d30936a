"""Migrations of the gateway's 2013 / 2024 Protocol disclosure-request tracker."""
