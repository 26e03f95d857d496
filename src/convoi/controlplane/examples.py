"""The seed's request examples, shown in the OpenAPI document (and sent by schemathesis).

Redacted or invalid-as-written values of the seed (``kb_3a1c…32hex…``, ``phn_9b2c...``,
``+9715XXXXXXXX``, ``+0000000``) are replaced by ones the shipped ``agents_config/`` defines.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CALL_CREATE_EXAMPLES"]


def _example(summary: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "value": value}


_AGENT = "agt_b88d642dd68747f28305c428b209xxxx"
_US_LINE = "phn_c38155f043624745a66d2e28c185xxxx"
CALL_CREATE_EXAMPLES: dict[str, dict[str, Any]] = {
    "web_minimal": _example("Web call: minimal", {"type": "web", "agent_id": _AGENT}),
    "web_overrides": _example(
        "Web call: with overrides",
        {
            "type": "web",
            "agent_id": _AGENT,
            "participant_name": "xyz",
            "agent_overrides": {
                "first_message": "Hi, how can I help?",
                "system_prompt": "You are a concise support agent.",
                "llm": {"model": "gpt-4o-mini", "temperature": 0.7},
                "tts": {"voice_id": "rachel", "speed": 1.0},
                "stt": {"language": "en", "model": "nova-2"},
                "knowledge_base_ids": ["kb_3a1c9e2b7d4f4a0b8c6e1f2a3b4c5d6e"],
            },
            "metadata": {"source": "landing-page", "user_ref": "u_42"},
        },
    ),
    "outbound_minimal": _example(
        "Outbound phone call: minimal",
        {
            "type": "outbound_phone",
            "agent_id": _AGENT,
            "customer": {"number": "+92310000053", "name": "xyz"},
            "phone_number_id": _US_LINE,
        },
    ),
    "outbound_full": _example(
        "Outbound phone call: full",
        {
            "type": "outbound_phone",
            "agent_id": _AGENT,
            "customer": {
                "number": "+971501234568",
                "name": "xyz",
                "metadata": {"lead_id": "L-12345"},
            },
            "phone_number_id": _US_LINE,
            "agent_overrides": {"first_message": "Hi Wasay, this is a quick callback from Convoi."},
            "metadata": {"campaign": "may-outreach"},
        },
    ),
    "workforce": _example(
        "Outbound phone call: with a Workforce",
        {
            "type": "outbound_phone",
            "agent_id": "sqd_3fa85f6457174562b3fc2c963f66afa6",
            "customer": {"number": "+971501234567", "name": "Ahmed"},
            "phone_number_id": "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7",
        },
    ),
}
