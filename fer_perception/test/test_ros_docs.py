"""docs/ros.md carries the topic and parameter tables generated from ros/topics.py and ros/params.py."""

from __future__ import annotations

from pathlib import Path

from fer_perception.ros import params, topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "ros.md"


def test_reference_tables_are_current():
    text = DOC.read_text()
    hint = "regenerate the table: python -m fer_perception.ros.params --markdown"
    assert params.markdown_table() in text, hint
    assert topics.markdown_table() in text


def test_every_published_topic_of_the_node_is_documented():
    text = DOC.read_text()
    for name in (topics.EMOTION_EVENTS, topics.EMOTION_FRAMES, topics.DEMOGRAPHICS, topics.ANNOTATED_IMAGE,
                 topics.EVENT_FRAME, topics.DIAGNOSTICS):
        assert f"`{name}`" in text
    for p in params.PARAMETERS:
        assert f"`{p.name}`" in text
