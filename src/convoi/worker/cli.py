"""``convoi-worker``: run the worker, or check definitions and calls without running one.

    convoi-worker start                      production worker (JSON logs, health on :8081)
    convoi-worker dev                        development worker (text logs, reload)
    convoi-worker console                    livekit's local console (needs libportaudio2)
    convoi-worker check-config [--config DIR]
    convoi-worker index [--config DIR] [--force]   build the knowledge index (if stale)
    convoi-worker check-call FILE [--config DIR] [--json]
    convoi-worker outbox status|dead-letters|requeue   the event outbox (see convoi.reporting.outbox_cli)

``start``/``dev``/``console`` are livekit-agents' own commands and take their options
(``convoi-worker start --help``). Exit codes: ``check-config`` 1 on invalid definitions;
``check-call`` 2 on an invalid call (1 if the definitions themselves are invalid); ``start`` 1 when
LiveKit cannot be reached after the configured retries.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convoi.callspec import CallSpecError, ResolvedCall, resolve_call
from convoi.definitions.loader import ConfigError, LoadResult, load_definitions
from convoi.definitions.prices import PriceList
from convoi.knowledge.check import document_issues
from convoi.pipeline import describe
from convoi.reporting import outbox_cli
from convoi.settings import WorkerSettings

__all__ = ["main"]

_LIVEKIT_COMMANDS = {"start", "dev", "console", "connect", "download-files"}


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def _load(config: Path) -> LoadResult | None:
    try:
        return load_definitions(config)
    except ConfigError as exc:
        for issue in exc.issues:
            print(str(issue), file=sys.stderr)
        print(f"\n{len(exc.issues)} problem(s) in {config}", file=sys.stderr)
        return None


def check_config(config: Path) -> int:
    """Validate every definition and print a summary; 1 on any error."""
    result = _load(config)
    if result is None or not _documents_ok(result, config):
        return 1
    defs = result.definitions
    prices = defs.prices
    print(f"Definitions in {config}: OK\n")
    header = ("id", "kind", "name", "llm / detail", "tts / detail", "stt / detail", "file")
    print(_table(_definition_rows(result), header))
    print(f"\nPrices ({prices.currency}):\n" + _table(_price_rows(prices), ("item", "price")))
    counts = defs.summary()
    print(
        "\n"
        + ", ".join(f"{n} {k}" for k, n in counts.items())
        + f", {sum(len(v) for v in prices.llm.values())} priced LLM models"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _documents_ok(result: LoadResult, config: Path) -> bool:
    """Print every problem of the knowledge bases' documents; False if there is one."""
    issues = document_issues(result, config)
    for issue in issues:
        print(str(issue), file=sys.stderr)
    if issues:
        print(f"\n{len(issues)} problem(s) in {config}", file=sys.stderr)
    return not issues


def build_knowledge_index(config: Path, *, force: bool = False) -> int:
    """``convoi-worker index``: build the knowledge index of ``config`` unless it is up to date."""
    from convoi.knowledge.settings import KnowledgeSettings
    from convoi.knowledge.startup import prepare_index

    result = _load(config)
    if result is None or not _documents_ok(result, config):
        return 1
    plan, built = prepare_index(result.definitions, config, KnowledgeSettings(), force=force)
    state = "built" if built else "up to date"
    print(f"knowledge index {state}: {plan.path} ({len(plan.documents)} documents)")
    return 0


def _definition_rows(result: LoadResult) -> list[tuple[str, ...]]:
    """One row per agent, squad, phone number and knowledge base, with the file it came from."""
    defs, src = result.definitions, result.sources
    rows: list[tuple[str, ...]] = [
        (
            a.id,
            "agent",
            a.name,
            f"{a.llm.provider}/{a.llm.model}",
            f"{a.tts.provider}/{a.tts.voice_id}",
            f"{a.stt.provider}/{a.stt.model}",
            src[a.id],
        )
        for a in defs.agents.values()
    ]
    rows += [
        (
            s.id,
            "squad",
            s.name,
            f"start={s.start_member}",
            f"members={','.join(s.members)}",
            f"context={s.context_policy}",
            src[s.id],
        )
        for s in defs.squads.values()
    ]
    rows += [
        (
            p.id,
            "phone_number",
            p.label or p.number,
            p.number,
            f"sip={p.sip.address}/{p.sip.transport}",
            "",
            src[p.id],
        )
        for p in defs.phone_numbers.values()
    ]
    rows += [
        (k.id, "knowledge_base", k.name, "", "", "", src[k.id])
        for k in defs.knowledge_bases.values()
    ]
    return rows


def _price_rows(prices: PriceList) -> list[tuple[str, str]]:
    """One row per priced model, then telephony and the platform fee."""
    rows = [
        (
            f"llm {p}/{m}",
            f"in {v.input_per_1m} / cached {v.cached_input_per_1m} / out {v.output_per_1m} per 1M tokens",
        )
        for p, ms in prices.llm.items()
        for m, v in ms.items()
    ]
    rows += [
        (f"stt {p}/{m}", f"{v.per_minute} per minute")
        for p, ms in prices.stt.items()
        for m, v in ms.items()
    ]
    rows += [
        (f"tts {p}/{m}", f"{v.per_1k_chars} per 1K characters")
        for p, ms in prices.tts.items()
        for m, v in ms.items()
    ]
    rows += [
        ("telephony", f"{prices.telephony.per_minute} per minute"),
        ("platform fee", f"{prices.platform_fee_per_minute} per minute"),
    ]
    return rows


def _report(call: ResolvedCall, settings: WorkerSettings) -> dict[str, Any]:
    spec = call.spec
    return {
        "call_id": spec.call_id,
        "type": spec.type,
        "agent_id": spec.agent_id,
        "squad_id": spec.squad_id,
        "start_member": call.start if call.squad else None,
        "phone_number": {
            "id": call.phone_number.id,
            "number": call.phone_number.number,
            "sip": call.phone_number.sip.address,
        }
        if call.phone_number
        else None,
        "customer_number": spec.customer.number if spec.customer else None,
        "contact_name": spec.contact_name,
        "metadata": spec.metadata,
        "members": {
            key: {
                "agent_id": m.agent.id,
                "name": m.agent.name,
                "greeting": m.greeting,
                "greeting_source": "first_message"
                if m.greeting is not None
                else "generated by the LLM",
                "system_prompt": m.instructions,
                "knowledge_base_ids": list(m.agent.knowledge_base_ids),
                "providers": describe(m.agent, settings),
                "merge_notes": list(m.notes),
            }
            for key, m in call.members.items()
        },
    }


def check_call(file: str, config: Path, as_json: bool) -> int:
    """Validate a CallSpec file against the definitions and show what the call will do."""
    loaded = _load(config)
    if loaded is None:
        return 1
    try:
        raw = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        call = resolve_call(raw, loaded.definitions)
    except CallSpecError as exc:
        if as_json:
            print(
                json.dumps(
                    {
                        "valid": False,
                        "reason": exc.reason,
                        "field": exc.field,
                        "problem": exc.problem,
                        "issues": [str(i) for i in exc.issues],
                    },
                    indent=2,
                )
            )
        for issue in exc.issues:
            print(f"invalid call: {issue}", file=sys.stderr)
        return 2
    report = _report(call, WorkerSettings())
    if as_json:
        print(json.dumps({"valid": True, **report}, indent=2, ensure_ascii=False, default=str))
        return 0
    print(f"Call {report['call_id']} ({report['type']}): valid")
    if report["phone_number"]:
        print(
            f"  dials {report['customer_number']} from {report['phone_number']['number']} ({report['phone_number']['id']}, trunk {report['phone_number']['sip']})"
        )
    if call.squad:
        print(f"  workforce {call.squad.id} ({call.squad.name}), starts with {call.start}")
    print(f"  contact name: {report['contact_name']!r}")
    for key, m in report["members"].items():
        print(f"\n[{key}] {m['agent_id']} {m['name']}")
        print(
            f"  greeting ({m['greeting_source']}): {m['greeting']!r}"
            if m["greeting"] is not None
            else "  greeting: generated by the LLM (no first_message)"
        )
        print("  system prompt:\n    " + m["system_prompt"].strip().replace("\n", "\n    "))
        for kind in ("llm", "stt", "tts"):
            shown = ", ".join(f"{k}={v}" for k, v in m["providers"][kind].items())
            print(f"  {kind}: {shown}")
        if m["knowledge_base_ids"]:
            print(f"  knowledge bases: {', '.join(m['knowledge_base_ids'])}")
        for note in m["merge_notes"]:
            print(f"  note: {note}")
    return 0


def _run_livekit(argv: list[str]) -> int:
    from convoi.worker.config import WorkerConfig
    from convoi.worker.server import build_server

    try:
        config = WorkerConfig.from_env()
    except ValueError as exc:  # a setting that cannot work
        print(f"error: {exc}", file=sys.stderr)
        return 1
    settings = config.settings
    loaded = _load(settings.config_dir)
    if loaded is None or not _documents_ok(loaded, settings.config_dir):
        return 1
    config = _with_knowledge_index(config, loaded)
    missing = settings.missing_provider_keys()
    if missing and argv[0] == "start":
        print(
            f"warning: {', '.join(missing)} not set: calls will fail with provider_error",
            file=sys.stderr,
        )
    server = build_server(config)
    from livekit.agents import cli

    sys.argv = ["convoi-worker", *argv]
    code = 0
    try:
        cli.run_app(server)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    if getattr(server, "_connection_failed", False):  # set by AgentServer after max_retry attempts
        print(
            f"error: could not connect to LiveKit at {settings.livekit_url} after {settings.max_retry} "
            "retries; check LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET and that the server is up",
            file=sys.stderr,
        )
        return 1
    return code


def _with_knowledge_index(config: Any, loaded: LoadResult) -> Any:
    """Build the knowledge index when stale, in this (main) process before any job process
    starts, and tell the job processes where it is."""
    import dataclasses

    from convoi.knowledge.startup import prepare_index

    try:
        plan, _ = prepare_index(loaded.definitions, config.settings.config_dir, config.knowledge)
    except Exception as exc:  # calls still run; every turn reports the missing index
        print(f"warning: could not build the knowledge index: {exc}", file=sys.stderr)
        return config
    return dataclasses.replace(config, knowledge_index=plan.path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``convoi-worker`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _LIVEKIT_COMMANDS:
        sys.exit(_run_livekit(argv))

    parser = argparse.ArgumentParser(
        prog="convoi-worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in sorted(_LIVEKIT_COMMANDS - {"download-files"}):
        sub.add_parser(
            name, help=f"livekit-agents' {name} command (see convoi-worker {name} --help)"
        )
    cc = sub.add_parser("check-config", help="validate agents_config/ and print a summary")
    cc.add_argument(
        "--config",
        type=Path,
        default=None,
        help="definitions folder (default: $CONVOI_CONFIG_DIR or agents_config)",
    )
    ck = sub.add_parser("check-call", help="validate a CallSpec and show the effective agent(s)")
    ck.add_argument("file", help="CallSpec JSON file ('-' for stdin)")
    ck.add_argument("--config", type=Path, default=None)
    ck.add_argument("--json", action="store_true", help="machine-readable output")
    outbox_cli.add_parser(sub)
    ix = sub.add_parser("index", help="build the knowledge index unless it is up to date")
    ix.add_argument("--config", type=Path, default=None)
    ix.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    if args.command == "outbox":
        return outbox_cli.run(args)
    config = args.config or WorkerSettings().config_dir
    if args.command == "index":
        return build_knowledge_index(config, force=args.force)
    if args.command == "check-config":
        return check_config(config)
    return check_call(args.file, config, args.json)


if __name__ == "__main__":
    sys.exit(main())
