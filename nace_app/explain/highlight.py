"""Word highlights as HTML, with no Streamlit: every piece of user text goes through `html.escape`.

The palette is colour-blind safe (blue toward the code, orange away from it, both light enough that dark text
keeps at least 7:1 contrast), and the sign never rests on colour alone: words that push toward the code are
underlined with a solid line and marked "+", words that push away with a dotted line and "−". A word flagged
because leave-one-out disagrees with its sign gets a "≠" after its mark.
"""

from __future__ import annotations

import html

TEXT_COLOUR = "#111111"
TOWARD = (107, 174, 214)  # #6baed6
AWAY = (253, 174, 107)  # #fdae6b


def _background(score: float, scale: float) -> str:
    strength = min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    r, g, b = TOWARD if score >= 0 else AWAY
    mix = [round(255 + (channel - 255) * strength) for channel in (r, g, b)]
    return f"rgb({mix[0]},{mix[1]},{mix[2]})"


FLAG = "≠"
FLAG_NOTE = "integrated gradients and leave-one-out disagree"


def _word_span(word: str, score: float, scale: float, flagged: bool) -> str:
    sign = "+" if score >= 0 else "−"
    line = "solid" if score >= 0 else "dotted"
    label = html.escape(f"{word}: {score:+.3f}" + (f" ({FLAG_NOTE})" if flagged else ""), quote=True)
    flag = f'<span class="nace-flag" style="font-weight:700">{FLAG}</span>' if flagged else ""
    return (f'<span class="nace-word" title="{label}" aria-label="{label}" style="background:{_background(score, scale)};'
            f"color:{TEXT_COLOUR};padding:1px 3px;border-radius:4px;text-decoration:underline {line} 2px;"
            f'text-underline-offset:3px">{html.escape(word)}<sup style="font-size:0.65em;margin-left:1px">{sign}{flag}'
            "</sup></span>")


def highlighted_text_html(text: str, words: list[tuple[int, int, float]], label: str,
                          read_until: int | None = None, flagged: frozenset[tuple[int, int]] = frozenset()) -> str:
    """The text with each scored word's background set by its signed score.

    `read_until`: where a model with a fixed window stops reading; the rest is shown struck through and grey.
    `flagged`: (start, end) of the words marked "≠" (the two explanation methods disagree on them).
    """
    scale = max((abs(s) for _, _, s in words), default=0.0)
    limit = len(text) if read_until is None else read_until
    parts, cursor = [], 0
    for start, end, score in sorted(words):
        if start < cursor or start >= limit:
            continue
        parts.append(html.escape(text[cursor:start]))
        parts.append(_word_span(text[start:end], score, scale, (start, end) in flagged))
        cursor = end
    if read_until is not None and cursor < len(text):
        parts.append(html.escape(text[cursor:limit]))
        parts.append('<span class="nace-unread" style="color:#666;text-decoration:line-through" '
                     f'title="not read by the model">{html.escape(text[max(cursor, limit):])}</span>')
    else:
        parts.append(html.escape(text[cursor:]))
    legend = (
        f'<div style="font-size:0.85rem;margin-top:6px;color:{TEXT_COLOUR}">'
        f'<span style="background:{_background(1, 1)};padding:1px 6px;border-radius:4px;'
        f'text-decoration:underline solid 2px">+ toward {html.escape(label)}</span> '
        f'<span style="background:{_background(-1, 1)};padding:1px 6px;border-radius:4px;'
        'text-decoration:underline dotted 2px">− away from it</span></div>'
    )
    return (f'<div class="nace-highlight" style="font-size:1.1rem;line-height:2.1;white-space:pre-wrap;'
            f'color:{TEXT_COLOUR}">' + "".join(parts) + "</div>" + legend)
