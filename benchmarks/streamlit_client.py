"""A session of a Streamlit app driven over its websocket, as the browser drives it, without a browser.

`bench_load.py --client websocket` uses it so that the server's latency is measured without ten Chromiums competing
for the same two cores. It speaks the messages a session needs: reruns with widget states (a click is a trigger),
fragment reruns, the auto-reruns of `st.fragment(run_every=...)`, the URL's query string, and the server's
reference to a message it sent before. It keeps the elements of the last run by their place on the page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

DONE = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY,
        ForwardMsg.FINISHED_WITH_COMPILE_ERROR)


@dataclass
class Shown:
    """One element on the page: its kind ("text_area", "html"…), its proto, and the fragment that drew it."""

    kind: str
    proto: Any
    fragment_id: str


@dataclass
class StreamlitSession:
    """One browser tab's session: `open` it on a page, `set` widget values, `rerun` (a click, a fragment's run)."""

    url: str
    timeout: float = 300.0
    elements: dict[tuple[int, ...], Shown] = field(default_factory=dict)
    query_string: str = ""
    page_hash: str = ""
    auto_reruns: dict[str, float] = field(default_factory=dict)  # fragment id -> interval (s)
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)  # widget id -> (WidgetState field, value)

    async def open(self, page: str = "") -> None:
        """Connect and run `page` (a url path name such as "train"; "" is the default page)."""
        self._socket = await websockets.connect(
            self.url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"], max_size=None)
        self._finished: asyncio.Queue[int] = asyncio.Queue()
        self._cached: dict[str, ForwardMsg] = {}
        self._reader = asyncio.create_task(self._read())
        await self.rerun(page_name=page)  # as a browser opening the page's address

    async def close(self) -> None:
        self._reader.cancel()
        await self._socket.close()

    async def rerun(self, trigger: str | None = None, fragment_id: str = "", auto: bool = False,
                    page_name: str = "") -> None:
        """Send the widgets' values (and `trigger`, a button's id, as pressed) and wait until the run is over, with
        every rerun it asked for (`st.rerun`)."""
        message = BackMsg()
        state = message.rerun_script
        state.query_string = self.query_string
        state.page_script_hash = self.page_hash
        state.page_name = page_name
        state.fragment_id = fragment_id
        state.is_auto_rerun = auto
        for widget_id, (kind, value) in self.values.items():
            widget = state.widget_states.widgets.add()
            widget.id = widget_id
            if kind == "double_array_value":
                widget.double_array_value.data.extend(value)
            else:
                setattr(widget, kind, value)
        if trigger is not None:
            widget = state.widget_states.widgets.add()
            widget.id = trigger
            widget.trigger_value = True
        await self._socket.send(message.SerializeToString())
        while await asyncio.wait_for(self._finished.get(), self.timeout) not in DONE:
            continue  # ended early for a rerun the script asked for: wait for that one

    async def poll(self) -> bool:
        """Run the page's timed fragment after its interval, as the browser's timer does; False when none polls."""
        if not self.auto_reruns:
            return False
        fragment_id, interval = next(iter(self.auto_reruns.items()))
        await asyncio.sleep(interval)
        await self.rerun(fragment_id=fragment_id, auto=True)
        return True

    def set(self, kind: str, label: str, value_field: str, value: Any) -> None:
        """Give the widget of `kind` labelled `label` a value, sent with the next reruns, as a browser keeps it."""
        self.values[self.widget(kind, label).proto.id] = (value_field, value)

    def widget(self, kind: str, label: str) -> Shown:
        for shown in self.elements.values():
            if shown.kind == kind and shown.proto.label == label:
                return shown
        raise LookupError(f"no {kind} labelled {label!r} on the page")

    def of_kind(self, kind: str) -> list[Shown]:
        """The elements of `kind`, in page order."""
        return [self.elements[path] for path in sorted(self.elements) if self.elements[path].kind == kind]

    async def _read(self) -> None:
        async for raw in self._socket:
            message = ForwardMsg()
            message.ParseFromString(raw)
            kind = message.WhichOneof("type")
            if kind == "ref_hash":  # the server sent this message before, and counts on the client to keep it
                cached = ForwardMsg()
                cached.CopyFrom(self._cached[message.ref_hash])
                cached.metadata.CopyFrom(message.metadata)
                message, kind = cached, cached.WhichOneof("type")
            elif message.hash:
                self._cached[message.hash] = message
            if kind == "new_session":  # a run starts: a full run redraws the page, a fragment's run only its own part
                redrawn = set(message.metadata.run.fragment_ids)
                self.elements = {path: shown for path, shown in self.elements.items()
                                 if redrawn and shown.fragment_id not in redrawn}
                if not redrawn:
                    self.auto_reruns.clear()
                self.page_hash = self.page_hash or message.new_session.main_script_hash
            elif kind == "navigation":
                self.page_hash = message.navigation.page_script_hash
            elif kind == "page_info_changed":
                self.query_string = message.page_info_changed.query_string
            elif kind == "auto_rerun":
                self.auto_reruns[message.auto_rerun.fragment_id] = message.auto_rerun.interval
            elif kind == "stop_auto_rerun":
                for fragment_id in message.stop_auto_rerun.fragment_ids:
                    self.auto_reruns.pop(fragment_id, None)
            elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
                element = message.delta.new_element
                element_kind = element.WhichOneof("type")
                self.elements[tuple(message.metadata.delta_path)] = Shown(
                    element_kind, getattr(element, element_kind), message.delta.fragment_id)
            elif kind == "script_finished":
                self._finished.put_nowait(message.script_finished)


class _Titles(HTMLParser):
    """The `title` of every element whose class list holds `css_class`, unescaped as a browser's getAttribute."""

    def __init__(self, css_class: str) -> None:
        super().__init__()
        self.css_class, self.titles = css_class, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if self.css_class in (found.get("class") or "").split() and found.get("title") is not None:
            self.titles.append(found["title"])


def titles(html: str, css_class: str) -> list[str]:
    parser = _Titles(css_class)
    parser.feed(html)
    return parser.titles
