"""The one reader and writer of Anthropic-HH transcripts ("\\n\\nHuman: ...\\n\\nAssistant:"); pure Python.

The reader is used by the importer (which adds its own checks and line-numbered errors) and by the
training engine (which imports no Django), so that a transcript becomes the same turns whichever side
reads it; the writer is what the exports' string prompts use, so that the two agree on the speakers.
"""

import re

ROLE_OF_MARKER = {"Human:": "user", "Assistant:": "assistant", "System:": "system"}
MARKER_OF_ROLE = {role: marker for marker, role in ROLE_OF_MARKER.items()}
# A speaker tag opens a paragraph: after a blank line, or at the very start of the text.
_MARKER = re.compile(r"(?:\A|\n\n)(Human:|Assistant:|System:)")
ANSWER_MARKER = "\n\nAssistant:"


def hh_turns(text: str) -> list[dict[str, str]]:
    """Split a transcript into `{"role", "content"}` turns, contents stripped.

    Text before the first speaker tag is a system preamble; text with no tag at all is one user turn.
    A final empty assistant turn is the slot the answer goes in, not a turn, and is dropped.
    """
    turns: list[dict[str, str]] = []
    markers = list(_MARKER.finditer(text))
    if not markers:
        return [{"role": "user", "content": text.strip()}] if text.strip() else []
    preamble = text[: markers[0].start()].strip()
    if preamble:
        turns.append({"role": "system", "content": preamble})
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        turns.append({"role": ROLE_OF_MARKER[marker.group(1)], "content": text[marker.end() : end].strip()})
    if turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    return turns


def hh_text(turns: list[dict[str, str]]) -> str:
    """Turns as a transcript `hh_turns` reads back, ending in the empty assistant slot for the answer."""
    parts = [f"\n\n{MARKER_OF_ROLE.get(t['role'], t['role'].title() + ':')} {t['content']}" for t in turns]
    return "".join(parts) + ANSWER_MARKER
