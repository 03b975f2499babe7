"""``fasterrcnn serve``: a model behind HTTP with a web page (needs the ``serve`` extra:
FastAPI and uvicorn, imported only by this package)."""
