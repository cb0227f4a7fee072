"""Batch embedding on Apache Beam (``python -m pipeline embed``) and the shards it writes."""
