"""/api/v1/rules: the loaded rule set, validation of a posted rule file, and backtests.

Validation and backtests use the rules package itself (``load_rules``, ``backtest``), so the API
accepts exactly what ``sense311 rules check`` accepts and reports the same file:line problems,
and a backtest here equals ``sense311 rules backtest --json``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from rules.backtest import backtest
from rules.errors import RuleFileError, UnknownRuleError
from rules.loader import BUILTIN_PACKS, RuleSet, load_rules
from sense311.api.auth import require
from sense311.api.body import media_type, read_body
from sense311.api.context import AppContext, get_context
from sense311.api.errors import ERROR_RESPONSES, Invalid, UnsupportedMedia
from sense311.api.models import IsoTime, Strict, Text, utc
from sense311.durations import format_duration

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["rules"], responses=ERROR_RESPONSES)
Ctx = Annotated[AppContext, Depends(get_context)]

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
_FILENAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}\.ya?ml$")


class RuleInfo(BaseModel):
    id: str
    version: str
    problem: str
    description: str
    enabled: bool
    #: Where the rule is defined: ``builtin:<pack>`` or the configured path, and the line.
    file: str | None
    line: int | None
    #: The normalised definition the version hashes (durations as '15m', conditions as text).
    definition: dict[str, Any]


class City(BaseModel):
    lat: float
    lon: float
    timezone: str


class RuleSetInfo(BaseModel):
    files: list[str]
    city: City | None
    rules: list[RuleInfo]
    #: The last reload's error when the files changed into something invalid (the last good set stays).
    reload_error: str | None


class Problem(BaseModel):
    file: str
    line: int | None
    field: str | None
    message: str


class Validation(BaseModel):
    valid: bool
    rules: list[RuleInfo]
    problems: list[Problem]


class BacktestRequest(Strict):
    start: IsoTime = Field(description="ISO 8601, UTC when no zone is given.")
    end: IsoTime = Field(description="ISO 8601, UTC when no zone is given.")
    rule_ids: list[Text] | None = Field(
        default=None, description="Only these rules (default: every enabled one)."
    )
    rules_yaml: Text | None = Field(
        default=None, description="Backtest this rule file instead of the loaded set."
    )


def _display(file: str) -> str:
    path = Path(file)
    return f"builtin:{path.stem}" if path.parent == BUILTIN_PACKS else file


def _info(ruleset: RuleSet, rename: dict[str, str] | None = None) -> list[RuleInfo]:
    out = []
    for rule in ruleset.rules:
        file, line = ruleset.sources.get(rule.id, (None, None))
        if file is not None:
            file = (rename or {}).get(file, _display(file))
        out.append(
            RuleInfo(
                id=rule.id,
                version=rule.version or "",
                problem=rule.problem,
                description=rule.description,
                enabled=rule.enabled,
                file=file,
                line=line,
                definition=rule.definition(),
            )
        )
    return out


def _load_posted(text: str, name: str) -> tuple[RuleSet | None, list[Problem], dict[str, str]]:
    """The posted file's rule set, or its problems, with the temporary path shown as ``name``."""
    with tempfile.TemporaryDirectory(prefix="sense311-rules-") as folder:
        path = Path(folder) / name
        path.write_text(text, encoding="utf-8")
        rename = {str(path): name}
        try:
            return load_rules(path), [], rename
        except yaml.YAMLError as exc:
            # The loader reports YAML errors itself, except those PyYAML raises before parsing
            # (characters YAML does not allow); say the same here.
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "position", None)
            line = mark.line + 1 if hasattr(mark, "line") else None
            reason = getattr(exc, "reason", None) or getattr(exc, "problem", None) or str(exc).splitlines()[0]
            return (
                None,
                [Problem(file=name, line=line, field=None, message=f"invalid YAML: {reason}")],
                rename,
            )
        except RuleFileError as exc:
            problems = [
                Problem(file=rename.get(p.file, name), line=p.line, field=p.field, message=p.message)
                for p in exc.problems
            ]
            return None, problems, rename


async def _posted_yaml(request: Request, ctx: AppContext) -> str:
    media = media_type(request)
    if media and media not in _YAML_TYPES:
        raise UnsupportedMedia(f"send the rule file as application/yaml (or text/plain), not {media!r}")
    data = await read_body(request, ctx.api.max_upload_bytes)
    if not data:
        raise Invalid("the request has no body; send the rule file's YAML")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"the rule file is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None


@router.get("/rules", dependencies=[Depends(require("read"))], summary="The loaded rule set")
def list_rules(ctx: Ctx) -> RuleSetInfo:
    """Every rule with its version, source and definition (reloaded when its files changed)."""
    ruleset = ctx.ruleset()
    city = ruleset.city
    error = ctx.rules.last_error
    return RuleSetInfo(
        files=[_display(f) for f in ruleset.files],
        city=City(lat=city.lat, lon=city.lon, timezone=city.timezone) if city else None,
        rules=_info(ruleset),
        reload_error=str(error) if error else None,
    )


_YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/rules/validate",
    dependencies=[Depends(require("read"))],
    summary="Validate a rule file",
    openapi_extra=_YAML_BODY,
)
async def validate_rules(
    request: Request,
    ctx: Ctx,
    filename: Annotated[
        str, Query(description="The name problems are reported under.", pattern=_FILENAME.pattern)
    ] = "rules.yaml",
) -> Validation:
    """Check a posted rule file as ``sense311 rules check`` does: valid, or every problem by line.

    An invalid file is a successful validation (200, ``valid: false``), not an error.
    """
    text = await _posted_yaml(request, ctx)
    if "\x00" in text:
        raise Invalid("the rule file contains NUL characters")
    ruleset, problems, rename = await run_in_threadpool(_load_posted, text, filename)
    rules = _info(ruleset, rename) if ruleset is not None else []
    return Validation(valid=ruleset is not None, rules=rules, problems=problems)


@router.post(
    "/rules/backtest",
    dependencies=[Depends(require("write"))],
    summary="Backtest rules over history",
    responses={200: {"description": "The backtest's JSON, as `sense311 rules backtest --json` writes it"}},
)
def backtest_rules(ctx: Ctx, body: BacktestRequest) -> dict[str, Any]:
    """Run the rules over ``[start, end]`` with the live state machine; return every detection,
    would-be incident and ticket and per-rule counts. It reads the whole period's readings, so it
    needs a write token and the period is capped by ``api.backtest_max_range``.
    """
    try:
        start, end = utc(body.start), utc(body.end)
    except OverflowError:
        raise Invalid("'start' or 'end' is out of the supported range of dates") from None
    if end <= start:
        raise Invalid(f"'end' ({end.isoformat()}) must be after 'start' ({start.isoformat()})")
    if end - start > ctx.api.backtest_max_range:
        raise Invalid(
            f"the backtest covers {format_duration(end - start)}; at most "
            f"{format_duration(ctx.api.backtest_max_range)} is allowed (api.backtest_max_range)"
        )
    if body.rules_yaml is not None:
        ruleset, problems, _ = _load_posted(body.rules_yaml, "rules.yaml")
        if ruleset is None:
            first = problems[0]
            where = f"line {first.line}: " if first.line else ""
            field = f"'{first.field}': " if first.field else ""
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise Invalid(f"rules_yaml is invalid: {where}{field}{first.message}{more}")
    else:
        ruleset = ctx.ruleset()
    try:
        chosen = ruleset.only(list(body.rule_ids) if body.rule_ids else None)
    except UnknownRuleError as exc:
        raise Invalid(str(exc)) from None
    with ctx.connection() as conn:
        result = backtest(conn, chosen, start, end)
    return result.to_json()
