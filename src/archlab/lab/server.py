"""The lab's web app: the JSON API and the Gradio page on one FastAPI app, served by uvicorn.

Offline by construction: Gradio's analytics and version check are off (``analytics_enabled=False``
and ``GRADIO_ANALYTICS_ENABLED=False``, which Gradio reads when it is imported), its server-side
rendering (a Node process) is off, and the theme names system font stacks instead of Gradio's
default web fonts, so the page requests nothing but this server (the browser test checks every
request). It binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError
from archlab.lab.state import Lab

__all__ = ["build_app", "check_port", "serve"]

log = logging.getLogger(__name__)

SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")


def _gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read at Gradio's import
    try:
        import gradio
    except ImportError:
        raise ArchlabError(
            'archlab lab needs Gradio: pip install -e ".[lab]" (or pip install "archlab[lab]")'
        ) from None
    return gradio


def build_app(lab: Lab, examples: Sequence[Path] = ()) -> Any:
    """The FastAPI app: ``/api/*`` and ``/study/report.html`` first, the page at ``/``."""
    gr = _gradio()
    from fastapi import FastAPI

    from archlab.lab.api import add_api_routes
    from archlab.lab.html import CSS
    from archlab.lab.ui import build_ui

    app = FastAPI(title="archlab lab", docs_url=None, redoc_url=None, openapi_url=None)
    add_api_routes(app, lab)
    theme = gr.themes.Base(font=list(SYSTEM_FONTS), font_mono=list(MONO_FONTS))
    return gr.mount_gradio_app(
        app,
        build_ui(lab, examples),
        path="/",
        theme=theme,
        css=CSS,
        ssr_mode=False,
        footer_links=[],
        mcp_server=False,
    )


def check_port(host: str, port: int) -> None:
    """A one-line error now, rather than uvicorn's traceback later, if the port is taken."""
    if not 0 < port < 65536:
        raise ArchlabError(f"--port must be in 1..65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        # as uvicorn binds: a just-stopped lab's connections in TIME_WAIT do not block the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ArchlabError(
                f"cannot listen on {host}:{port} ({e.strerror}); pass another --port"
            ) from None


def serve(app: Any, host: str, port: int, threads: int = 1) -> None:
    """Run until interrupted (Ctrl-C), with ``threads`` torch threads for inference.

    One by default: a request runs a few small models, and the machine is shared — with another
    process on one of 2 cores, /api/next-word on four models took 65-72 ms at 1 thread and
    405-437 ms at 2 (median of 15, measured here); concurrent requests also each get a core.
    """
    import torch
    import uvicorn

    torch.set_num_threads(threads)
    log.info("archlab lab: http://%s:%d/  (Ctrl-C stops it)", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
