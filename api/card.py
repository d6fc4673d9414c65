"""A model card (a repo's README.md) rendered for the model page, sanitised.

Markdown is rendered by markdown-it-py with raw HTML turned off, so a ``<script>``, an
``<img onerror=...>`` or any other tag in the card is shown as text; what markdown itself makes is
narrowed further: links keep http(s), mailto and in-page anchors only (a relative link points at the
file in zoo's hub mirror), and images become plain links ("image: alt"), so neither the server nor the
reader's browser fetches anything a card names. The front matter (YAML between ``---`` lines) is left out.
The page's Content-Security-Policy is the second layer.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n.*?\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
_SCHEMES = ("http", "https", "mailto")
_REL = "nofollow noopener noreferrer"


def _make() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = _allowed  # type: ignore[method-assign]
    md.add_render_rule("image", _image)
    md.add_render_rule("link_open", _link_open)
    return md


def _allowed(url: str) -> bool:
    scheme = urlsplit(url.strip()).scheme.lower()
    return scheme in _SCHEMES or scheme == ""


def _target(url: str, env: dict[str, Any]) -> str | None:
    """Where a link of the card leads from the page: absolute http(s)/mailto as is, ``#anchor`` as is, a
    path of the repo to that file in the mirror (when the repo and commit are known), anything else nowhere."""
    parts = urlsplit(url.strip())
    if parts.scheme:
        return url if parts.scheme.lower() in _SCHEMES and (parts.netloc or parts.scheme.lower() == "mailto") else None
    if url.startswith("#"):
        return url
    base = env.get("files_url")
    segments = [s for s in parts.path.split("/") if s not in ("", ".")]
    if not base or not segments or ".." in segments or parts.path.startswith("/"):
        return None
    return f"{base}/{quote('/'.join(segments))}"


def _image(self: Any, tokens: list, idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or "image"
    target = _target(token.attrGet("src") or "", env)
    label = escapeHtml(f"image: {alt}")
    if target is None:
        return f'<span class="card-image">[{label}]</span>'
    return f'<a class="card-image" href="{escapeHtml(target)}" rel="{_REL}">[{label}]</a>'


def _link_open(self: Any, tokens: list, idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    target = _target(token.attrGet("href") or "", env)
    token.attrs = {"href": target, "rel": _REL} if target else {"class": "card-dead-link"}
    if target is None:
        token.tag = "span"
        closing = _closing(tokens, idx)
        if closing is not None:
            closing.tag = "span"
    return self.renderToken(tokens, idx, options, env)


def _closing(tokens: list, idx: int) -> Any:
    depth = 0
    for token in tokens[idx + 1:]:
        if token.type == "link_open":
            depth += 1
        elif token.type == "link_close":
            if depth == 0:
                return token
            depth -= 1
    return None


_MD = _make()


def render_card(text: str, *, files_url: str | None = None) -> str:
    """The card as safe HTML. ``files_url``: where the repo's files are served (the mirror's resolve URL at
    the card's commit), for the card's relative links."""
    body = _FRONT_MATTER.sub("", text, count=1)
    return _MD.render(body, {"files_url": files_url})
