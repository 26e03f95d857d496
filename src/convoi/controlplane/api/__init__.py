"""The HTTP layer: routers (``routes/``), dependencies (``deps``) and the error handler."""
