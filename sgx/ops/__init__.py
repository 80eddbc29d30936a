"""Running the services: metrics, HTTP serving and readiness, trust reloads, garbage-
collector settings.
"""
