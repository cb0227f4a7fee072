"""The search service: an HTTP API and a web page over an index (``make serve``).

``state.py`` holds the searcher and does the work; ``app.py`` is the FastAPI layer;
``metrics.py`` the Prometheus counters; ``static/index.html`` the page; ``commands.py`` the
``serve`` command.
"""
