"""The api function's HTTP layer: API Gateway HTTP API events (payload 2.0) to route functions,
their inputs validated by the routes' pydantic models, every error in one shape (ErrorBody).

A route declares its method and path, its path, query, header and body models, and what it
answers; shared/openapi.py builds the OpenAPI document from the same declarations when it is first
asked for. It replaces Powertools' APIGatewayHttpResolver, whose import (every resolver of
Powertools' event handler package and, with validation on, its OpenAPI models) was about half of
the api's cold start (README, "Cold start").
"""

from __future__ import annotations

import base64
import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.errors import InvalidParameter, QuotaExceeded, ServiceError
from shared.http_input import json_body
from shared.observability import logger
from shared.schemas import ErrorBody, FieldError

JSON = "application/json"


@dataclass
class Response:
    """An answer other than a route's own status with its model as the body."""

    status: int
    body: BaseModel | str
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    compress: bool = False  # gzip it when the client accepts gzip


@dataclass
class Request:
    event: dict[str, Any]
    context: Any
    # The route's models, validated (None where it declares none).
    path: Any = None
    query: Any = None
    headers: Any = None
    body: Any = None
    caller: Any = None  # who is calling, as the router's guard found it

    @property
    def raw_headers(self) -> dict[str, str]:
        """The headers as sent, their names in lower case (as API Gateway sends them)."""
        return {name.lower(): value for name, value in (self.event.get("headers") or {}).items()}

    @property
    def raw_body(self) -> str:
        """The body as sent (a body that is not UTF-8 keeps U+FFFD in place of its bad bytes)."""
        body = self.event.get("body") or ""
        return base64.b64decode(body).decode("utf-8", "replace") if self.event.get("isBase64Encoded") else body

    @property
    def request_id(self) -> str | None:
        return (self.event.get("requestContext") or {}).get("requestId")


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # an OpenAPI path template: /api/v1/jobs/{job_id}
    endpoint: Callable[[Request], BaseModel | Response]
    operation_id: str | None = None
    status: int = 200
    response: Any = None  # the success body's model (or a union of models), for the document
    description: str = ""  # of the success response
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # error statuses it may answer besides 422 and 500
    other_responses: dict[int, tuple[str, Any]] = field(default_factory=dict)  # status: (description, model)
    security: list[dict[str, list[str]]] | None = None
    tags: tuple[str, ...] = ()
    documented: bool = True

    @property
    def pattern(self) -> re.Pattern[str]:
        """The path template as a regular expression: each {name} one path segment."""
        return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$")


class RequestInvalid(Exception):
    """Path, query, header or body values a route's models refuse: a 422 naming each field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class Router:
    def __init__(self, guard: Callable[[Route, Request], None] | None = None) -> None:
        """`guard(route, request)` runs once the route is found and before anything of the request
        is read: it may refuse it (raise a ServiceError, e.g. 401), so a caller without access
        learns nothing from validation errors."""
        self.routes: list[Route] = []
        self._patterns: list[tuple[re.Pattern[str], Route]] = []
        self._guard = guard

    def get(self, path: str, **options: Any) -> Callable:
        return self._route("GET", path, options)

    def post(self, path: str, **options: Any) -> Callable:
        return self._route("POST", path, options)

    def _route(self, method: str, path: str, options: dict[str, Any]) -> Callable:
        def register(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
            route = Route(method, path, endpoint, **options)
            self.routes.append(route)
            self._patterns.append((route.pattern, route))
            return endpoint

        return register

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """The API Gateway response to an event: the route's answer, or an error in our shape."""
        request = Request(event, context)
        try:
            route, path_values = self._match(event)
            if self._guard:
                self._guard(route, request)
            _validate(route, request, path_values)
            answer = route.endpoint(request)
            return _to_event(answer if isinstance(answer, Response) else Response(route.status, answer), request)
        except RequestInvalid as exc:
            answer = error(422, "VALIDATION_ERROR", str(exc) or "Invalid request", exc.errors)
        except ServiceError as exc:
            answer = service_error(exc)
        except Exception:
            logger.exception("Unhandled error")
            answer = error(500, "INTERNAL_ERROR", "Something went wrong on our side; try again")
        return _to_event(answer, request)

    def _match(self, event: dict[str, Any]) -> tuple[Route, dict[str, str]]:
        method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "")
        path = event.get("rawPath") or "/"
        for pattern, route in self._patterns:
            found = pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        raise RouteNotFound(f"No route for {method} {path}")


class RouteNotFound(ServiceError):
    status_code = 404
    code = "NOT_FOUND"


def _validate(route: Route, request: Request, path_values: dict[str, str]) -> None:
    """Fill the request's models, or raise: unknown query parameters, then the body's media type,
    size and JSON, then every field of every model (all their errors at once)."""
    query = request.event.get("queryStringParameters") or {}
    _refuse_unknown_query_parameters(route, query)
    headers = request.raw_headers
    values = {"path": path_values, "query": query, "header": headers}
    if route.body:
        values["body"] = json_body(headers, request.event.get("body"), bool(request.event.get("isBase64Encoded")))
    models = {"path": route.path_params, "query": route.query, "header": route.headers, "body": route.body}
    errors: list[FieldError] = []
    validated = {}
    for location, model in models.items():
        if model is None:
            continue
        try:
            validated[location] = model.model_validate(values[location])
        except ValidationError as exc:
            errors += [_field_error(e, location) for e in exc.errors()]
    if errors:
        raise RequestInvalid(errors)
    request.path, request.query = validated.get("path"), validated.get("query")
    request.headers, request.body = validated.get("header"), validated.get("body")


def _refuse_unknown_query_parameters(route: Route, query: dict[str, str]) -> None:
    known = {f.alias or name for name, f in route.query.model_fields.items()} if route.query else set()
    unknown = sorted(set(query) - known)
    if not unknown:
        return
    message = "Unknown query parameter"
    if "cursor" in known:  # an offset- or page-based client would otherwise loop on page 1
        message += "; this list pages by `cursor` (the `next_cursor` of the previous page), not offset or page"
    raise RequestInvalid([FieldError(field=name, location="query", message=message) for name in unknown])


def _field_error(error: Any, location: str) -> FieldError:
    path = ".".join(str(part) for part in error.get("loc", ()))
    kind = error.get("type", "")
    message = "Unknown field" if kind == "extra_forbidden" else error.get("msg") or kind.replace("_", " ")
    message = message.removeprefix("Value error, ")  # our own validators' messages, as written
    return FieldError(field=path or location, location=location, message=message)


# ---- answers: one shape for every error ---------------------------------------------------------
def service_error(exc: ServiceError) -> Response:
    if isinstance(exc, InvalidParameter):
        field_error = FieldError(field=exc.field, location=exc.location, message=exc.reason)
        return error(422, exc.code, exc.message, [field_error])
    if isinstance(exc, QuotaExceeded):
        return error(429, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)})
    return error(exc.status_code, exc.code, exc.message)


def error(
    status: int, code: str, detail: str, errors: list[FieldError] | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(status, ErrorBody(code=code, detail=detail, errors=errors), headers=headers or {})


def _to_event(answer: Response, request: Request) -> dict[str, Any]:
    body = answer.body
    if isinstance(body, ErrorBody):
        body = body.model_copy(update={"request_id": request.request_id}).model_dump_json(exclude_none=True)
    elif isinstance(body, BaseModel):
        body = body.model_dump_json()
    headers = {"Content-Type": answer.content_type, **answer.headers}
    encoded = answer.compress and "gzip" in request.raw_headers.get("accept-encoding", "")
    if encoded:
        body = base64.b64encode(gzip.compress(body.encode())).decode()
        headers["Content-Encoding"] = "gzip"
    return {"statusCode": answer.status, "headers": headers, "body": body, "isBase64Encoded": encoded, "cookies": []}
