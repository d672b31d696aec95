"""Highlights escape user text, mark the sign without colour, keep contrast, and grey out what was not read."""

import re

from nace_app.explain.highlight import TEXT_COLOUR, _background, highlighted_text_html


def luminance(rgb: tuple[int, ...]) -> float:
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_user_markup_is_escaped_everywhere():
    text = '<img src=x onerror="alert(1)"> bakery'
    html = highlighted_text_html(text, [(0, 4, 0.5), (30, 36, -0.2)], '<b>"10.71"</b>')
    assert "<img" not in html and "<b>" not in html and "&lt;img" in html and "&quot;" in html


def test_sign_is_shown_by_a_mark_and_a_line_style_not_only_by_colour():
    html = highlighted_text_html("good bad", [(0, 4, 1.0), (5, 8, -1.0)], "10.71")
    toward, away = re.findall(r'<span class="nace-word"[^>]*>', html)
    assert "underline solid" in toward and "underline dotted" in away
    assert ">good<sup" in html and "+</sup>" in html and "−</sup>" in html
    assert 'aria-label="good: +1.000"' in html  # the score without a mouse, for screen readers too


def test_the_strongest_backgrounds_keep_at_least_7_to_1_contrast_with_the_text():
    text = tuple(int(TEXT_COLOUR[i:i + 2], 16) for i in (1, 3, 5))
    for score in (1.0, -1.0):
        background = tuple(int(v) for v in re.findall(r"\d+", _background(score, 1.0)))
        ratio = (luminance(background) + 0.05) / (luminance(text) + 0.05)
        assert ratio >= 7.0


def test_words_past_the_window_are_struck_through_and_never_highlighted():
    text = "bread and more bread"
    html = highlighted_text_html(text, [(0, 5, 1.0), (15, 20, 1.0)], "10.71", read_until=9)
    assert html.count('class="nace-word"') == 1 and 'class="nace-unread"' in html and "more bread" in html


def test_a_flagged_word_carries_the_disagreement_mark_and_says_so_without_a_mouse():
    html = highlighted_text_html("to restaurants", [(0, 2, 0.1), (3, 14, 0.72)], "46.31", flagged=frozenset({(3, 14)}))
    assert html.count('class="nace-flag"') == 1
    assert "+<span class=\"nace-flag\"" in html.split(">restaurants<")[1]
    assert 'aria-label="restaurants: +0.720 (integrated gradients and leave-one-out disagree)"' in html
