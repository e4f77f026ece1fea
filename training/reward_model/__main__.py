"""`python -m training.reward_model ...`: see `training.reward_model.cli` for commands and output protocol."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
