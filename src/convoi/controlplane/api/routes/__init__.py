"""One router per resource: ``calls`` (public), ``events`` (worker → control plane), ``health``."""
