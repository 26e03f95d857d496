"""Documentation generated from the code (``python -m convoi.docs.config_reference``)."""
