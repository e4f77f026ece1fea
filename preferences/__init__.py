"""The core of preference data, with neither Django nor torch: what both the web side and the engine know.

Conversations and HH transcripts (`conversations`, `hh`), rankings and the pairs they state (`rankings`,
`pairs`), how much people agree (`agreement`) and what they agree on (`consensus`), the readers of every
input format (`readers`) and the rows the exports write (`export_rows`). `annotation` stores these in the
database and `training.reward_model` trains on them; this package imports from neither.
"""
