"""JSON request bodies validated by pydantic models; every failure is a 415 or 422 problem."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from signer.errors import InvalidInput, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)


def parse_json(model: type[M]) -> M:
    """The request body as ``model``: 415 unless JSON, 422 when malformed or invalid."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    raw = request.get_data(cache=True)
    try:
        data: Any = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    """``data`` as ``model``, or a 422 listing every invalid field (also used by the CLI)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidInput("the request body is not valid: " + "; ".join(
            f"{e['field']}: {e['message']}" for e in errors), errors=errors) from None
