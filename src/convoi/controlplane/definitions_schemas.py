"""Request and response bodies of the definitions API, built from the definition models.

For each kind (agent, squad, phone number, knowledge base): ``<Model>Create`` is the model without
``id`` (the API assigns it, with the kind's prefix), ``<Model>Object`` the stored object as
returned (the document plus ``object``, ``version``, ``created_at``, ``updated_at``), and
``<Model>List`` a list of them (``{"object": "list", "data": [...]}``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from convoi.controlplane import definitions as store
from convoi.controlplane.schemas import Timestamp

__all__ = ["CREATE_MODELS", "LIST_MODELS", "OBJECT_MODELS", "DeletedObject", "object_body"]


def _create_model(kind: store.Kind) -> type[BaseModel]:
    base = store.MODELS[kind]
    model: type[BaseModel] = create_model(
        f"{base.__name__}Create",
        __base__=base,
        id=(None, Field(None, description="Assigned by the API; leave it out.")),
    )
    return model


def _object_model(kind: store.Kind) -> type[BaseModel]:
    base = store.MODELS[kind]
    model: type[BaseModel] = create_model(
        f"{base.__name__}Object",
        __base__=base,
        object=(str, Field(..., description="The kind of object.", examples=[kind])),
        version=(int, Field(..., ge=1, description="Increases with every update.")),
        created_at=(Timestamp, ...),
        updated_at=(Timestamp, Field(..., description="When this version was stored.")),
    )
    return model


CREATE_MODELS: dict[store.Kind, type[BaseModel]] = {k: _create_model(k) for k in store.KINDS}
OBJECT_MODELS: dict[store.Kind, type[BaseModel]] = {k: _object_model(k) for k in store.KINDS}
LIST_MODELS: dict[store.Kind, type[BaseModel]] = {
    kind: create_model(
        f"{store.MODELS[kind].__name__}List",
        object=(str, Field("list", examples=["list"])),
        data=(list[OBJECT_MODELS[kind]], ...),  # type: ignore[valid-type]
    )
    for kind in store.KINDS
}


class DeletedObject(BaseModel):
    """The answer to a DELETE."""

    model_config = ConfigDict(extra="forbid")

    id: str
    object: str
    deleted: Literal[True] = True


def object_body(stored: store.Stored) -> dict[str, Any]:
    """The stored object as its JSON body."""
    model = OBJECT_MODELS[stored.kind]
    value = model.model_validate(
        {
            **stored.document,
            "object": stored.kind,
            "version": stored.version,
            "created_at": stored.created_at,
            "updated_at": stored.updated_at,
        }
    )
    body: dict[str, Any] = value.model_dump(mode="json")
    return body
