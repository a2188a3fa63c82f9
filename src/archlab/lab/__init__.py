"""``archlab lab``: the seed's comparisons, live in the browser.

Layers, bottom up (each file one concern; only ``ui`` and ``server`` import Gradio, only ``api``
and ``server`` FastAPI — the optional ``lab`` extra):

- ``models``: trained run directories, loaded and named; ``defaults``: the six small default
  runs trained on first start; ``state``: one session's models, study folder and progress;
- ``text`` (per-token loss, GPT attention, gradient saliency), ``vision`` (shift test, CNN feature
  maps, ViT attention), ``costs`` (``archlab cost`` from JSON, FLOPs against n): the analyses;
- ``service``: the JSON API's answers; ``views`` + ``html`` + ``plots``: the page's content;
- ``api`` (FastAPI routes), ``ui`` (the Gradio page), ``server`` (both on one app, uvicorn).

Everything below ``api`` is plain Python over the library (``archlab.train.inference``,
``archlab.cost``, ``archlab.train.runs``) and is tested without a browser.
"""

from archlab.lab.models import LabModel, load_models
from archlab.lab.state import Lab

__all__ = ["Lab", "LabModel", "load_models"]
