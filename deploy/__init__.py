"""Deployment artefacts; :mod:`deploy.acl_plan` plans the cluster's topics and ACLs."""
