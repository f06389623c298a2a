"""`python -m trainer ...` = `kbloop train ...`; the entry point for `accelerate launch -m trainer`."""

from trainer.cli import train_app

train_app(prog_name="python -m trainer")
