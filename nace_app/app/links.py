"""Shared links: what a Predict URL may carry, bounded and validated (a link is untrusted input)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nace_app.coding.predicting import DEFAULT_TOP_K, MAX_CHARS, MAX_TOP_K

VIEWS = ("highlights", "contrast", "words", "occlusion", "attention")
_CODE = re.compile(r"^[0-9]{2}\.[0-9]{2}$")
_FOLLOW_UP = re.compile(r"^(stage|product|customer):[0-9a-z.]{1,16}$")
_MODEL = re.compile(r"^(embedded|runs:/[0-9A-Za-z_-]{1,64}/model|trained:[0-9A-Za-z_.-]{1,80})$")


@dataclass(frozen=True)
class SharedView:
    text: str
    top_k: int
    code: str | None
    rival: str | None
    view: str
    model: str | None  # "embedded", "runs:/<id>/model" or "trained:<run name>"; None for the default
    follow_up: str | None = None  # the follow-up question asked and its answer: "stage:retail", "product:47.2"


def parse_query(params: dict[str, str]) -> SharedView:
    """Read text, k, code, rival, view, model and the follow-up answer from a link, keeping only well-formed values."""
    text = str(params.get("text", ""))[:MAX_CHARS]
    try:
        top_k = min(max(int(params.get("k", DEFAULT_TOP_K)), 1), MAX_TOP_K)
    except ValueError:
        top_k = DEFAULT_TOP_K
    code, rival = str(params.get("code", "")), str(params.get("rival", ""))
    view = str(params.get("view", VIEWS[0]))
    model = str(params.get("model", ""))
    follow_up = str(params.get("follow_up", ""))
    return SharedView(text, top_k, code if _CODE.match(code) else None, rival if _CODE.match(rival) else None,
                      view if view in VIEWS else VIEWS[0], model if _MODEL.match(model) else None,
                      follow_up if _FOLLOW_UP.match(follow_up) else None)


def link_params(view: SharedView) -> dict[str, str]:
    params = {"text": view.text, "k": str(view.top_k), "view": view.view}
    for key, value in (("code", view.code), ("rival", view.rival), ("model", view.model), ("follow_up", view.follow_up)):
        if value:
            params[key] = value
    return params
