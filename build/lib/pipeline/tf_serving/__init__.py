"""Deployment with TF Serving: SavedModel exports (``export``), a REST client (``client``) and
their command-line commands (``commands``)."""
