"""The JSON API beside the page, for notebooks and tests (FastAPI routes on the lab's app).

=====================  ==========================================================================
``GET /api/models``    ``[{name, kind: lm|image, arch, params}, ...]``
``GET /api/status``    first-start training progress and the number of models loaded
``POST /api/next-word`` ``{prompt, top_k=5}`` -> ``{run_name: [{token, prob}, ...]}``
``POST /api/generate`` ``{prompt, max_new_tokens=100, temperature=1.0, top_k=null, seed=null}``
                       -> ``{run_name: {text, continuation}}``
``POST /api/classify`` body: the image file's bytes, ``Content-Type: image/*``; query ``dx``, ``dy``
                       (pixels), ``top_k=3``, ``invert=auto|yes|no``
                       -> ``{run_name: [{label, prob}]}``
``POST /api/cost``     ``{layer, <archlab cost's options in snake_case>...}``
                       -> ``archlab cost --json``
=====================  ==========================================================================

Bad input is answered ``{"error": "<one line>"}`` with a 4xx status — 400 a body that is not JSON,
413 a prompt or upload over the limit, 415 a body that is not ``image/*``, 422 a value out of
range (an empty prompt, an undecodable image, an absurd size), 503 while the default models
train — and the server keeps serving: no request can take it down, and an unexpected failure is
one 500 line (logged with its traceback).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
# runtime to tell the ``Request`` parameter from query parameters.
import json
import logging
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from archlab.errors import ArchlabError
from archlab.lab.costs import cost_json
from archlab.lab.service import classifications, generations, next_words
from archlab.lab.state import Lab, NotReady
from archlab.lab.text import PromptTooLong
from archlab.lab.vision import MAX_UPLOAD_BYTES, ImageTooLarge

__all__ = ["add_api_routes", "status_of"]

log = logging.getLogger(__name__)


def status_of(e: Exception) -> int:
    if isinstance(e, (PromptTooLong, ImageTooLarge)):
        return 413
    if isinstance(e, NotReady):
        return 503
    return 422


def _fields(body: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ArchlabError("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ArchlabError(
            f"unknown field(s) {', '.join(unknown)}; this takes {', '.join(allowed)}"
        )
    return body


def add_api_routes(app: Any, lab: Lab) -> None:
    """Add the routes above to the FastAPI ``app`` (before Gradio is mounted at ``/``)."""

    def fail(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status)

    async def answer(work: Callable[[], Any]) -> JSONResponse:
        try:
            return JSONResponse(await run_in_threadpool(work))
        except ArchlabError as e:
            return fail(status_of(e), str(e))
        except Exception as e:  # a bug, not the user's input: one line out, the trace in the log
            log.exception("lab API request failed")
            return fail(500, f"internal error: {type(e).__name__}: {e}")

    async def json_body(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise ArchlabError("the body is not JSON") from None

    async def with_json(request: Request, work: Callable[[Any], Any]) -> JSONResponse:
        try:
            body = await json_body(request)
        except ArchlabError as e:
            return fail(400, str(e))
        return await answer(lambda: work(body))

    @app.get("/api/models")
    async def models() -> JSONResponse:
        return JSONResponse([m.describe() for m in lab.models])

    @app.get("/api/status")
    async def status() -> JSONResponse:
        return JSONResponse({"models": len(lab.models), "training": lab.progress.snapshot()})

    @app.post("/api/next-word")
    async def next_word(request: Request) -> JSONResponse:
        def work(body: Any) -> Any:
            b = _fields(body, ("prompt", "top_k"))
            return next_words(lab, b.get("prompt"), b.get("top_k", 5))

        return await with_json(request, work)

    @app.post("/api/generate")
    async def generate(request: Request) -> JSONResponse:
        def work(body: Any) -> Any:
            b = _fields(body, ("prompt", "max_new_tokens", "temperature", "top_k", "seed"))
            return generations(
                lab,
                b.get("prompt"),
                b.get("max_new_tokens", 100),
                b.get("temperature", 1.0),
                b.get("top_k"),
                b.get("seed"),
            )

        return await with_json(request, work)

    @app.post("/api/classify")
    async def classify(
        request: Request, dx: str = "0", dy: str = "0", top_k: str = "3", invert: str = "auto"
    ) -> JSONResponse:
        kind = request.headers.get("content-type", "")
        if not kind.startswith("image/"):
            return fail(
                415,
                f"send the image file's bytes with Content-Type image/*, not {kind or 'none'!r}",
            )
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_UPLOAD_BYTES:
            return fail(413, f"the image is {int(size):,} bytes; the lab takes at most 10 MiB")
        data = await request.body()
        try:
            args = [_query_int(name, v) for name, v in (("dx", dx), ("dy", dy), ("top_k", top_k))]
        except ArchlabError as e:
            return fail(422, str(e))
        return await answer(lambda: classifications(lab, data, *args, invert=invert))

    @app.post("/api/cost")
    async def cost(request: Request) -> JSONResponse:
        return await with_json(request, cost_json)

    @app.get("/study/report.html", response_model=None)
    async def study_report() -> Any:
        report = lab.study_dir / "report.html"
        if not report.is_file():
            return fail(404, f"no study report at {report}; run archlab study")
        return FileResponse(report, media_type="text/html")


def _query_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ArchlabError(f"{name} must be an integer, got {text!r}") from None
