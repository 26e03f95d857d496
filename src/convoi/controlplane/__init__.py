"""``convoi-api``: the control plane implementing the seed's Calls API (docs/architecture.md §1, §2, §7, §8).

Layout (one concept per module)::

    app.py          create_app(settings, gateway=None): the FastAPI app
    api/            main.py (routers), deps.py (Annotated dependencies), errors.py (one handler),
                    routes/calls.py, routes/events.py, routes/health.py
    calls.py        create / read calls (CallSpec built and resolved, LiveKit, idempotency)
    presenters.py   rows → the seed's response bodies
    schemas.py      request/response models with the seed's descriptions
    examples.py     the seed's request examples (OpenAPI)
    keys.py         API keys (hashed), principals, what pk_live_ keys may do
    idempotency.py  Idempotency-Key claim / replay / release
    events.py       signed worker events → call state (reuses convoi.receiver.ingest_event)
    livekit.py      LiveKitGateway protocol + the livekit-api implementation
    db/             SQLAlchemy models, engine, Alembic driver; migrations/ holds the scripts
    settings.py     ControlPlaneSettings (environment)
    cli.py          convoi-api serve | migrate | create-key

Test and devstack helpers live outside the production package:
:mod:`convoi.devstack.controlplane_fakes` (``FakeLiveKitGateway``, ``signed_event``) and
:mod:`convoi.devstack.controlplane_harness` (``ControlPlaneServer``: the app on a free port in a
thread, for end-to-end tests).
"""

from convoi.controlplane.app import create_app
from convoi.controlplane.livekit import LiveKitApiGateway, LiveKitGateway
from convoi.controlplane.settings import ControlPlaneSettings

__all__ = [
    "ControlPlaneSettings",
    "LiveKitApiGateway",
    "LiveKitGateway",
    "create_app",
]
