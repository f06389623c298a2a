"""The top layer: the `kbloop` command line (`cli.app`), one module per command group.

Each command imports what it runs inside its body, so `kbloop --help` stays fast and never imports
torch. `python -m cli` is `kbloop`; `python -m cli.train` is `kbloop train` (for `accelerate launch`).
"""
