"""A shared link is untrusted: every value is bounded or dropped, and a view survives the round trip."""

from nace_app.app.links import SharedView, link_params, parse_query
from nace_app.coding.predicting import DEFAULT_TOP_K, MAX_CHARS, MAX_TOP_K


def test_a_view_survives_the_round_trip_through_its_link():
    view = SharedView("I sell bread", 3, "10.71", "47.24", "contrast", "embedded")
    assert parse_query(link_params(view)) == view


def test_bad_values_fall_back_to_defaults():
    shared = parse_query({"text": "x" * (MAX_CHARS + 50), "k": "lots", "code": "<script>", "rival": "10.7",
                          "view": "javascript:", "model": "../../etc/passwd"})
    assert len(shared.text) == MAX_CHARS and shared.top_k == DEFAULT_TOP_K
    assert shared.code is None and shared.rival is None and shared.view == "highlights" and shared.model is None


def test_top_k_is_clamped_and_models_are_only_known_shapes():
    assert parse_query({"k": "99"}).top_k == MAX_TOP_K and parse_query({"k": "-3"}).top_k == 1
    assert parse_query({"model": "runs:/abc123/model"}).model == "runs:/abc123/model"
    assert parse_query({"model": "trained:094512-3"}).model == "trained:094512-3"
    assert parse_query({"model": "s3://bucket/model"}).model is None  # never a source a link could point at


def test_a_link_records_the_follow_up_answer_and_drops_a_malformed_one():
    assert parse_query({"text": "shoes", "follow_up": "stage:retail"}).follow_up == "stage:retail"
    assert parse_query({"text": "shoes", "follow_up": "product:47.2"}).follow_up == "product:47.2"
    for bad in ("stage:<script>", "colour:red", "stage:" + "x" * 40):
        assert parse_query({"text": "shoes", "follow_up": bad}).follow_up is None
    view = SharedView("shoes", 5, None, None, "highlights", None, "customer:households")
    assert link_params(view)["follow_up"] == "customer:households"
    assert "follow_up" not in link_params(SharedView("shoes", 5, None, None, "highlights", None))
