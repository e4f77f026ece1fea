"""The shared HH transcript reader: the importer and the training engine read a transcript alike."""

import pytest

from preferences.conversations import normalize_conversation
from preferences.hh import hh_turns


@pytest.mark.parametrize(
    ("text", "turns"),
    [
        (
            "\n\nHuman: hi\n\nAssistant: hey\n\nHuman: why?",
            [("user", "hi"), ("assistant", "hey"), ("user", "why?")],
        ),
        ("Human: a\n\nAssistant: b", [("user", "a"), ("assistant", "b")]),  # no blank line before the first
        ("\n\nSystem: be brief\n\nHuman: q\n\nAssistant:", [("system", "be brief"), ("user", "q")]),
        ("You are terse.\n\nHuman: q", [("system", "You are terse."), ("user", "q")]),  # a preamble
        ("just a question", [("user", "just a question")]),
        ("", []),
        # A tag inside a paragraph is text, and so is text after it up to the next paragraph tag.
        (
            "\n\nHuman: I wrote Human: here\nand Assistant: there",
            [("user", "I wrote Human: here\nand Assistant: there")],
        ),
        ("\n\nHuman: a\n\nAssistant: one\n\nmore", [("user", "a"), ("assistant", "one\n\nmore")]),
    ],
)
def test_hh_turns(text, turns):
    assert hh_turns(text) == [{"role": role, "content": content} for role, content in turns]


def test_the_engine_reads_hh_strings_with_the_same_reader():
    text = "Be kind.\n\nHuman: hi\n\nAssistant: hey\n\nHuman: why?\n\nAssistant:"
    assert normalize_conversation(text) == hh_turns(text)
